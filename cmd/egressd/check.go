package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/egressd/egressd/cmd/egressd/internal/check"
	"github.com/egressd/egressd/rules"
)

const checkUsage = `usage: egressd check [--egress-proxy URL] PATH...

Validates EgressRule files and directories: prints every problem as
"file:line: field: message", each warning prefixed "warning: ", then a
summary. Exit status: 0 valid, 1 invalid, 2 usage error.

Flags:
`

// checkConfig is the command line of `egressd check`.
type checkConfig struct {
	EgressProxy      string
	EgressProxyGiven bool // set, even to "", by the flag or EGRESSD_EGRESS_PROXY
}

// newCheckFlags declares check's one flag on a fresh FlagSet; its
// environment twin is read by checkCmd before parsing, the flag wins.
func newCheckFlags(cfg *checkConfig, out io.Writer) *flag.FlagSet {
	fs := newFlagSet("egressd check", checkUsage, out)
	fs.Func("egress-proxy", "`URL` egressd run will be given (env EGRESSD_EGRESS_PROXY); checked against rules with useEgressProxy",
		func(s string) error { cfg.EgressProxy, cfg.EgressProxyGiven = s, true; return nil })
	return fs
}

// checkCmd implements `egressd check`.
func checkCmd(_ context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := &checkConfig{}
	cfg.EgressProxy, cfg.EgressProxyGiven = os.LookupEnv("EGRESSD_EGRESS_PROXY")
	fs := newCheckFlags(cfg, stderr)
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "egressd check: no rule files given")
		fs.Usage()
		return exitError{exitUsage}
	}

	set, warnings, err := rules.Load(fs.Args()...)
	var problems []rules.Problem
	var le *rules.Error
	switch {
	case errors.As(err, &le):
		problems = le.Problems
	case err != nil:
		problems = []rules.Problem{{Message: err.Error()}}
	}
	p, w := check.EgressProxy(set, cfg.EgressProxy, cfg.EgressProxyGiven)
	problems = append(problems, p...)
	warnings = append(warnings, w...)

	if !check.Print(stdout, set, problems, warnings) {
		return exitError{exitFailure}
	}
	return nil
}
