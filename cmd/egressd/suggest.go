package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/egressd/egressd/cmd/egressd/internal/envflag"
	"github.com/egressd/egressd/internal/suggest"
)

const suggestUsage = `usage: egressd suggest [flags] [FILE...]

Reads egressd access logs (the FILEs, or standard input when none is given
or FILE is -; JSON and text lines, mixed with egressd's other log records,
which are skipped) and prints EgressRules that would allow the requests seen
(decision allow and would-deny), one rule per host name with a port for
each port it was reached on, the protocol from how it was used. Comments
say how many requests each rule covers, which requests were left out and
why (IP literals, no host name, no port, denied, malformed lines by file and
line) and propose wildcards where sibling names were seen; the same summary
goes to standard error. The output is valid input for egressd check and
egressd run --rules; review it before enforcing it.

Exit status: 0 when rules were printed, 1 when an input cannot be read or
no rule can be suggested (no request line, or all left out), 2 on a usage
error.

Flags:
`

// suggestConfig is the command line of `egressd suggest`.
type suggestConfig struct {
	WildcardMin   int
	IncludeDenied bool
}

// newSuggestFlags declares suggest's flags on a fresh FlagSet.
func newSuggestFlags(cfg *suggestConfig, out io.Writer) *flag.FlagSet {
	fs := newFlagSet("egressd suggest", suggestUsage, out)
	fs.IntVar(&cfg.WildcardMin, "wildcard-min", suggest.DefaultWildcardMin,
		"sibling names under one parent that make a wildcard proposal (a comment, never a rule in force); 0: none")
	fs.BoolVar(&cfg.IncludeDenied, "include-denied", false, "suggest rules for denied requests (decision deny) too")
	return fs
}

// suggestCmd implements `egressd suggest`.
func suggestCmd(_ context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	cfg := &suggestConfig{}
	fs := newSuggestFlags(cfg, stderr)
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if err := envflag.Apply(fs, os.LookupEnv); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if cfg.WildcardMin < 0 {
		return fmt.Errorf("%w: --wildcard-min %d: want 0 (no proposals) or more", errUsage, cfg.WildcardMin)
	}
	files := fs.Args()
	if len(files) == 0 {
		files = []string{"-"}
	}
	s := suggest.New(suggest.Options{WildcardMin: cfg.WildcardMin, IncludeDenied: cfg.IncludeDenied})
	for _, f := range files {
		if err := s.ReadLog(f, stdin); err != nil {
			return fmt.Errorf("suggest: %w", err)
		}
	}
	var out bytes.Buffer
	sum, _ := s.Write(&out, sourcesText(files))
	fmt.Fprintln(stderr, sum.Line())
	if sum.Requests == 0 {
		fmt.Fprintln(stderr, "egressd suggest: no access-log request line in the input (egressd logs them with --access-log on; a compressed log needs unpacking first)")
		return exitError{exitFailure}
	}
	if sum.Rules == 0 {
		fmt.Fprintln(stderr, "egressd suggest: no rule to suggest: every request was left out")
		return exitError{exitFailure}
	}
	if err := suggest.Loads(out.Bytes()); err != nil {
		return fmt.Errorf("suggest: the suggested rules do not load (a bug, please report it with the input): %w", err)
	}
	_, err := stdout.Write(out.Bytes())
	return err
}

func sourcesText(files []string) string {
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = f
		if f == "-" {
			names[i] = "stdin"
		}
	}
	return strings.Join(names, ", ")
}
