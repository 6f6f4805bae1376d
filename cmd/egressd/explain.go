package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/egressd/egressd/cmd/egressd/internal/envflag"
	"github.com/egressd/egressd/cmd/egressd/internal/explain"
	"github.com/egressd/egressd/rules"
)

const explainUsage = `usage: egressd explain --rules PATH [--] HOST[:PORT]...
       egressd explain --rules PATH --log FILE|-
       egressd explain --rules PATH --log-line LINE [--log-line LINE]...
       egressd explain --pod NAMESPACE/NAME [--admin ADDR]

Prints, for each HOST[:PORT] (port 80 when none is given; IPv6 as
[2001:db8::1]:443), one line saying whether egressd would allow it, by which
rule, on which port and protocol, and whether through the egress proxy:

  allow api.foo.com:443 rule=foo-egress-rule service=*.foo.com port=443 protocol=HTTPS egress-proxy=no source=rules.yaml:1
  deny  evil.test:80 no egress rule allows evil.test on port 80

Flags come before the hosts. A HOST beginning with '-' must follow '--',
or it is read as a flag: egressd explain --rules rules.yaml -- -x.foo.com

With --log (a file, or - for standard input) or --log-line, it reads
egressd access-log lines (JSON or text; other log records are skipped) and
says, for each request, what was decided then and why, and what the rules
at PATH decide now:

  stdin:2 b.test:80 http/1.1 logged would-deny, now deny: no egress rule allows b.test on port 80 (allowed on 443/HTTPS); in enforce mode: 403
  stdin:3 api.foo.com:443 http/1.1 logged allow by rule foo, now allow by rule=foo service=*.foo.com port=443 protocol=HTTPS egress-proxy=no source=rules.yaml:1

With --namespace NS it answers for the pods of namespace NS: the global
rules (--rules; with --kubeconfig also the EgressRules of the global
namespace) and then NS's own, from --namespace-rules PATH or, with
--kubeconfig, the EgressRule objects in the API (each checked as the agent
checks it; one the agent refuses is named on stderr and left out):

  egressd explain --rules global.yaml --namespace team-a --kubeconfig ~/.kube/config api.a.example:443

With --pod it asks the agent of this node (its admin address; run it in
the agent's pod, e.g. kubectl exec) whether the pod is exempt from
redirection, and why:

  exempt   infra/backup reason=label: label egressd.io/exempt=true in namespace infra, which --exempt-label-namespace lists; not redirected: no rule applies to it
  governed team-a/web: label egressd.io/exempt=true ignored: namespace team-a is not listed by --exempt-label-namespace; redirected: the rules decide its requests

Exit status: 0 when the rules are valid (whatever the answers), 1 when they
are not or a log cannot be read, 2 on a usage error; with --pod, 0 when the
agent answered, 1 when it could not be asked or does not know the pod.

Flags:
`

// explainConfig is the command line of `egressd explain`.
type explainConfig struct {
	Rules, Log, Pod, Admin string
	LogLines               []string
	Scope                  explain.Scope // --namespace and its sources
}

// newExplainFlags declares explain's flags on a fresh FlagSet. Only
// --rules and --admin have environment twins (EGRESSD_RULES and
// EGRESSD_ADMIN, as for run), read as their defaults.
func newExplainFlags(cfg *explainConfig, out io.Writer) *flag.FlagSet {
	fs := newFlagSet("egressd explain", explainUsage, out)
	fs.StringVar(&cfg.Rules, "rules", os.Getenv("EGRESSD_RULES"), "EgressRule `file or directory` (env EGRESSD_RULES)")
	fs.StringVar(&cfg.Log, "log", "", "access log `file` to explain line by line (- for standard input)")
	fs.Var(envflag.List(&cfg.LogLines, envflag.String), "log-line", "one access-log `line` to explain (repeatable)")
	fs.StringVar(&cfg.Scope.Namespace, "namespace", "", "answer for the pods of this `namespace`: the global rules, then the namespace's own (from --namespace-rules or, with --kubeconfig, the API)")
	fs.StringVar(&cfg.Scope.NamespaceRules, "namespace-rules", "", "the namespace's EgressRule `file or directory`, with --namespace")
	fs.StringVar(&cfg.Scope.Kubeconfig, "kubeconfig", "", "kubeconfig `file`: with --namespace, list the namespace's and the global namespace's EgressRules from the API")
	fs.StringVar(&cfg.Scope.GlobalNamespace, "global-namespace", "", "with --kubeconfig, the `namespace` whose EgressRules apply to every pod (default: as the agent's, egressd outside a pod)")
	fs.StringVar(&cfg.Pod, "pod", "", "`NAMESPACE/NAME` of a pod of this node: ask the agent whether it is exempt from redirection, and why")
	fs.StringVar(&cfg.Admin, "admin", cmp.Or(os.Getenv("EGRESSD_ADMIN"), defaultAdmin), "the agent's admin `address`, for --pod (env EGRESSD_ADMIN)")
	return fs
}

// explainCmd implements `egressd explain`.
func explainCmd(_ context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	cfg := &explainConfig{}
	fs := newExplainFlags(cfg, stderr)
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	path, logFile, logLines, scope := &cfg.Rules, &cfg.Log, cfg.LogLines, &cfg.Scope
	fromLog := *logFile != "" || len(logLines) > 0
	if cfg.Pod != "" {
		if fromLog || fs.NArg() > 0 {
			fmt.Fprintln(stderr, "egressd explain: give --pod alone, or hosts, or access-log lines")
			return exitError{exitUsage}
		}
		return explainPod(cfg.Admin, cfg.Pod, stdout, stderr) // explainpod.go
	}
	switch {
	case *path == "" || fs.NArg() == 0 && !fromLog:
		fmt.Fprintln(stderr, "egressd explain: give --rules PATH and at least one HOST[:PORT], or --log FILE, or --log-line LINE")
		fs.Usage()
		return exitError{exitUsage}
	case fromLog && fs.NArg() > 0:
		fmt.Fprintln(stderr, "egressd explain: give hosts or access-log lines (--log, --log-line), not both")
		return exitError{exitUsage}
	case *logFile != "" && len(logLines) > 0:
		fmt.Fprintln(stderr, "egressd explain: give --log or --log-line, not both")
		return exitError{exitUsage}
	case scope.Usage() != "":
		fmt.Fprintln(stderr, "egressd explain:", scope.Usage())
		return exitError{exitUsage}
	}
	type query struct {
		host string
		port uint16
	}
	queries := make([]query, fs.NArg())
	for i, arg := range fs.Args() {
		host, port, err := explain.SplitArg(arg)
		if err != nil {
			fmt.Fprintf(stderr, "egressd explain: %v\n", err)
			return exitError{exitUsage}
		}
		queries[i] = query{host, port}
	}

	set, warnings, err := rules.Load(*path)
	for _, w := range warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		fmt.Fprintln(stderr, "egressd explain: the rules are invalid; run egressd check for a summary")
		return exitError{exitFailure}
	}
	if set, err = scope.Layer(set, stderr); err != nil {
		fmt.Fprintln(stderr, err)
		return exitError{exitFailure}
	}
	switch {
	case len(logLines) > 0:
		return explain.Log("line", strings.NewReader(strings.Join(logLines, "\n")), set, stdout)
	case *logFile == "-":
		return explain.Log("stdin", stdin, set, stdout)
	case *logFile != "":
		f, err := os.Open(*logFile)
		if err != nil {
			return fmt.Errorf("explain: %w", err)
		}
		defer f.Close()
		return explain.Log(*logFile, f, set, stdout)
	}
	for _, q := range queries {
		fmt.Fprintln(stdout, explain.Line(set, q.host, q.port))
	}
	return nil
}
