// Command egressd is the egress control agent: it redirects the outbound TCP
// connections of a cgroup subtree to its own HTTP proxy, which forwards only
// what the EgressRules allow.
//
//	egressd run --rules PATH [--cgroup PATH]... [flags]
//	egressd check PATH...
//	egressd explain --rules PATH HOST[:PORT]...
//	egressd explain --rules PATH --log FILE|-
//	egressd suggest [FILE...]
//	egressd gateway --rules PATH [flags]
//
// A second `egressd run` on the same proxy port and pin directory takes
// over from the running one without refusing a connect: it is handed the
// listening sockets, attaches, serves, and only then does the old one stop
// accepting and drain; if the new one fails to start, the old one keeps
// serving. handover.go describes the order; run.go, serve.go and admin.go
// are the agent's start, serve loop and admin endpoints.
//
// Other files: flags.go run's command line (twins and flag values in
// package envflag); limits.go the process limits (package limits);
// scopes.go, kube.go and exemptpods.go the --cgroup-rules scopes, the
// Kubernetes wiring and the exempt pods; dnsservers.go and accesslog.go
// the DNS servers allowed and the access log; metrics.go the agent's
// metrics; gateway.go `egressd gateway`; check.go, explain.go,
// explainpod.go and suggest.go those subcommands' flags, usage and exit
// codes, their logic in packages check, explain and internal/suggest.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // runtime failure, or invalid rules for check
	exitUsage   = 2 // bad command line
)

// errUsage marks command-line errors; main maps it to exit code 2.
var errUsage = errors.New("usage error")

// exitError carries an explicit exit code without an extra message.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	fmt.Fprintf(stderr, "egressd: %v\n", err)
	if errors.Is(err, errUsage) {
		return exitUsage
	}
	return exitFailure
}

const usage = `usage:
  egressd run --rules PATH [--cgroup PATH]... [flags]   run the agent
  egressd check PATH...                                  validate rule files
  egressd explain --rules PATH HOST[:PORT]...           show which rule applies
  egressd explain --rules PATH --log FILE|-              explain access-log lines
  egressd suggest [FILE...]                              EgressRules from access logs
  egressd gateway --rules PATH [flags]                   run the dedicated egress proxy

Run "egressd COMMAND -h" for the flags of a command.
`

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return dispatchIn(ctx, args, os.Stdin, stdout, stderr)
}

// dispatchIn is dispatch with the standard input given (suggest and
// explain --log - read it).
func dispatchIn(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitError{exitUsage}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return runCmd(ctx, rest, stdout, stderr)
	case "check":
		return checkCmd(ctx, rest, stdout, stderr)
	case "explain":
		return explainCmd(ctx, rest, stdin, stdout, stderr)
	case "suggest":
		return suggestCmd(ctx, rest, stdin, stdout, stderr)
	case "gateway":
		return gatewayCmd(ctx, rest, stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "egressd: unknown command %q\n%s", cmd, usage)
	return exitError{exitUsage}
}
