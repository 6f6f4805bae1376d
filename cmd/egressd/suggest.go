package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/egressd/egressd/internal/accesslog"
	"github.com/egressd/egressd/internal/suggest"
	"github.com/egressd/egressd/rules"
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
	fs := flag.NewFlagSet("egressd suggest", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() { fmt.Fprint(out, suggestUsage); fs.PrintDefaults() }
	fs.IntVar(&cfg.WildcardMin, "wildcard-min", suggest.DefaultWildcardMin,
		"sibling names under one parent that make a wildcard proposal (a comment, never a rule in force); 0: none")
	fs.BoolVar(&cfg.IncludeDenied, "include-denied", false, "suggest rules for denied requests (decision deny) too")
	return fs
}

// suggestCmd implements `egressd suggest`.
func suggestCmd(_ context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	cfg := &suggestConfig{}
	fs := newSuggestFlags(cfg, stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return exitError{exitUsage}
	}
	if err := applyEnv(fs, os.LookupEnv); err != nil {
		return err
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
		if err := readAccessLog(f, stdin, s.Add, s.Malformed, s.Skipped); err != nil {
			return fmt.Errorf("suggest: %w", err)
		}
	}
	var out bytes.Buffer
	sum, _ := s.Write(&out, sourcesText(files))
	fmt.Fprintln(stderr, suggestSummary(sum))
	if sum.Requests == 0 {
		fmt.Fprintln(stderr, "egressd suggest: no access-log request line in the input (egressd logs them with --access-log on; a compressed log needs unpacking first)")
		return exitError{exitFailure}
	}
	if sum.Rules == 0 {
		fmt.Fprintln(stderr, "egressd suggest: no rule to suggest: every request was left out")
		return exitError{exitFailure}
	}
	if err := checkSuggested(out.Bytes()); err != nil {
		return fmt.Errorf("suggest: the suggested rules do not load (a bug, please report it with the input): %w", err)
	}
	_, err := stdout.Write(out.Bytes())
	return err
}

// readAccessLog reads one access log, path or "-" for stdin, into add,
// malformed and skipped. Only a file that cannot be read is an error.
func readAccessLog(path string, stdin io.Reader, add func(string, *accesslog.Entry),
	malformed func(string, int, error), skipped func(int)) error {
	src, r := path, stdin
	if path == "-" {
		src = "stdin"
	} else {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	lr := accesslog.NewReader(r)
	for {
		e, err := lr.Next()
		var le *accesslog.LineError
		switch {
		case err == io.EOF:
			skipped(lr.Skipped())
			return nil
		case errors.As(err, &le):
			malformed(src, le.Line, le.Err)
		case err != nil:
			return fmt.Errorf("read %s: %w", src, err)
		default:
			add(src, e)
		}
	}
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

// suggestSummary is the one line suggest writes to stderr.
func suggestSummary(s suggest.Summary) string {
	line := fmt.Sprintf("egressd suggest: %s %d of %s", suggest.Covers(s.Rules), s.Covered, plural(s.Requests, "request"))
	if s.Proposals > 0 {
		line += fmt.Sprintf("; %s proposed (comments)", plural(s.Proposals, "wildcard"))
	}
	if len(s.LeftOut) > 0 {
		line += "; left out: " + strings.Join(s.LeftOut, "; ")
	}
	if s.Malformed > 0 {
		line += fmt.Sprintf("; %s not read (listed in the output)", plural(s.Malformed, "malformed line"))
	}
	if s.Skipped > 0 {
		line += fmt.Sprintf("; %s skipped", plural(s.Skipped, "other log record"))
	}
	return line
}

// checkSuggested loads the suggested YAML as egressd check would.
func checkSuggested(yaml []byte) error {
	dir, err := os.MkdirTemp("", "egressd-suggest-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "suggested.yaml")
	if err := os.WriteFile(path, yaml, 0o600); err != nil {
		return err
	}
	_, _, err = rules.Load(path)
	return err
}
