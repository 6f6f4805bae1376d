package main

import (
	"context"
	"errors"
	"io"
)

// checkCmd is a placeholder until the subcommand lands.
func checkCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("check: not implemented yet")
}
