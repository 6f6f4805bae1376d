package main

import (
	"context"
	"errors"
	"io"
)

// gatewayCmd is a placeholder until the subcommand lands.
func gatewayCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("gateway: not implemented yet")
}
