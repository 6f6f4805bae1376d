package main

import (
	"context"
	"errors"
	"io"
)

// explainCmd is a placeholder until the subcommand lands.
func explainCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("explain: not implemented yet")
}
