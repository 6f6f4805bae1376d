package main

import (
	"context"
	"errors"
	"io"
)

// runCmd is a placeholder until the subcommand lands.
func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("run: not implemented yet")
}
