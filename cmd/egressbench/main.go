// Command egressbench measures what egressd costs each request, side by side
// with the direct path and with peer proxies (nginx, HAProxy), in one
// invocation so that ratios are meaningful on a noisy machine.
//
//	egressbench run [flags]        build the topology, run every scenario, report
//	egressbench worker CONFIG      (internal) generate load, print a JSON result
//	egressbench upstream [flags]   (internal) the 100-byte HTTP/HTTPS/h2c upstream
//
// "run" needs root: it creates a network namespace holding the upstream on
// 198.18.0.2, a cgroup for the load generator (egressd redirects that cgroup),
// and starts egressd, nginx and HAProxy from temporary directories. Everything
// it starts is stopped by PID, and everything it creates is removed, also on
// failure or interrupt.
//
// Files: run.go the command line and the run; env.go the run's
// environment and its cases (direct, nginx, HAProxy, the egressd ones);
// topology.go the namespace, veth and cgroup; fixtures.go the rules files,
// DNS and certificates; egressd.go starting egressd; procs.go the
// processes started and stopped by PID;
// matrix.go the interleaved runs and what each measures; worker.go,
// h2load.go, grpcload.go, grpcopen.go, bulk.go and hold.go the load
// generators; upstream.go the upstream. What a run produced and how it is
// shown is package report, the --tests load shapes package scenario. The
// harness imports no product package: it measures built binaries from
// outside (profiles of the proxy: l7's BenchmarkProfile).
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

var errUsage = errors.New("usage error")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "egressbench: %v\n", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

const usage = `usage:
  egressbench run [flags]        run the comparison (root); -h for flags
  egressbench worker CONFIG      internal: generate load, print a JSON result
  egressbench upstream [flags]   internal: the 100-byte upstream server
`

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "run":
		return runCmd(ctx, args[1:], stdout, stderr)
	case "worker":
		return workerCmd(ctx, args[1:], stdout, stderr)
	case "upstream":
		return upstreamCmd(ctx, args[1:], stdout)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q: %w", args[0], errUsage)
}
