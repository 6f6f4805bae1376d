package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/egressd/egressd/internal/accesslog"
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

// explainCmd implements `egressd explain`.
func explainCmd(_ context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("egressd explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, explainUsage); fs.PrintDefaults() }
	path := fs.String("rules", os.Getenv("EGRESSD_RULES"), "EgressRule `file or directory` (env EGRESSD_RULES)")
	logFile := fs.String("log", "", "access log `file` to explain line by line (- for standard input)")
	var logLines []string
	fs.Var(listFlag(&logLines, func(s string) (string, error) { return s, nil }), "log-line", "one access-log `line` to explain (repeatable)")
	var scope explainScope // explainns.go
	scope.flags(fs)
	pod, admin := explainPodFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return exitError{exitUsage}
	}
	fromLog := *logFile != "" || len(logLines) > 0
	if *pod != "" {
		if fromLog || fs.NArg() > 0 {
			fmt.Fprintln(stderr, "egressd explain: give --pod alone, or hosts, or access-log lines")
			return exitError{exitUsage}
		}
		return explainPod(*admin, *pod, stdout, stderr) // explainpod.go
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
	case scope.usage() != "":
		fmt.Fprintln(stderr, "egressd explain:", scope.usage())
		return exitError{exitUsage}
	}
	type query struct {
		host string
		port uint16
	}
	queries := make([]query, fs.NArg())
	for i, arg := range fs.Args() {
		host, port, err := splitExplainArg(arg)
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
	if set, err = scope.layer(set, stderr); err != nil {
		fmt.Fprintln(stderr, err)
		return exitError{exitFailure}
	}
	switch {
	case len(logLines) > 0:
		return explainLog("line", strings.NewReader(strings.Join(logLines, "\n")), set, stdout)
	case *logFile == "-":
		return explainLog("stdin", stdin, set, stdout)
	case *logFile != "":
		f, err := os.Open(*logFile)
		if err != nil {
			return fmt.Errorf("explain: %w", err)
		}
		defer f.Close()
		return explainLog(*logFile, f, set, stdout)
	}
	for _, q := range queries {
		fmt.Fprintln(stdout, explainLine(set, q.host, q.port))
	}
	return nil
}

// splitExplainArg splits HOST[:PORT]; the port defaults to 80.
func splitExplainArg(arg string) (string, uint16, error) {
	host, portStr := arg, "80"
	if strings.HasPrefix(arg, "[") || strings.Count(arg, ":") == 1 {
		h, p, err := net.SplitHostPort(arg)
		if err != nil && strings.HasPrefix(arg, "[") && strings.HasSuffix(arg, "]") {
			h, p, err = arg[1:len(arg)-1], "80", nil
		}
		if err != nil {
			return "", 0, fmt.Errorf("%q: want HOST[:PORT], with an IPv6 address in brackets", arg)
		}
		host, portStr = h, p
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if host == "" || err != nil || port == 0 {
		return "", 0, fmt.Errorf("%q: want HOST[:PORT] with a port from 1 to 65535", arg)
	}
	return host, uint16(port), nil
}

// explainLine answers one query in one greppable line.
func explainLine(set *rules.Set, host string, port uint16) string {
	hp := net.JoinHostPort(host, strconv.Itoa(int(port)))
	if ok, detail := explainMatch(set, host, port); ok {
		return "allow " + hp + " " + detail
	} else {
		return "deny  " + hp + " " + detail
	}
}

// explainMatch decides host on port: for an allowed one the rule, port,
// protocol, egress proxy and source; for a denied one why, and on which
// ports the host would be allowed.
func explainMatch(set *rules.Set, host string, port uint16) (bool, string) {
	hp := net.JoinHostPort(host, strconv.Itoa(int(port)))
	m, ok := set.Match(hp, port)
	if !ok {
		line := fmt.Sprintf("no egress rule allows %s on port %d", host, port)
		if other := otherPorts(set, hp); other != "" {
			line += " (" + other + ")"
		}
		return false, line
	}
	proxy := "no"
	if m.UseEgressProxy {
		proxy = "yes"
	}
	return true, fmt.Sprintf("rule=%s service=%s port=%d protocol=%s egress-proxy=%s source=%s",
		m.Rule.Name, m.Rule.Service, m.Port.Number, m.Port.Protocol, proxy, m.Rule.Source)
}

// otherPorts says on which ports host would be allowed, if on any: a
// denial's most common cause is a missing port.
func otherPorts(set *rules.Set, hp string) string {
	var ports []string
	for _, r := range set.Rules() {
		for _, p := range r.Ports {
			if m, ok := set.Match(hp, p.Number); ok && m.Rule == r {
				ports = append(ports, strconv.Itoa(int(p.Number))+"/"+p.Protocol.String())
			}
		}
	}
	if len(ports) == 0 {
		return ""
	}
	return "allowed on " + strings.Join(ports, ", ")
}

// explainLog explains every request line of an access log against set;
// a malformed line is said so, and the next one read.
func explainLog(src string, r io.Reader, set *rules.Set, stdout io.Writer) error {
	lr := accesslog.NewReader(r)
	n := 0
	for {
		e, err := lr.Next()
		var le *accesslog.LineError
		switch {
		case err == io.EOF:
			if n == 0 {
				fmt.Fprintf(stdout, "%s: no access-log request line (%d other log records)\n", src, lr.Skipped())
			}
			return nil
		case errors.As(err, &le):
			fmt.Fprintf(stdout, "%s:%d not an access-log line: %v\n", src, le.Line, le.Err)
		case err != nil:
			return fmt.Errorf("explain: read %s: %w", src, err)
		default:
			n++
			fmt.Fprintf(stdout, "%s:%d %s\n", src, e.Line, explainEntry(set, e))
		}
	}
}

// explainEntry says what was decided for e, why, and what set decides now.
func explainEntry(set *rules.Set, e *accesslog.Entry) string {
	host := e.HostName()
	hp := net.JoinHostPort(host, strconv.Itoa(int(e.Port)))
	out := fmt.Sprintf("%s %s logged %s", quoteIfNeeded(hp), quoteIfNeeded(e.Protocol), quoteIfNeeded(e.Decision))
	if e.Rule != "" {
		out += " by rule " + quoteIfNeeded(e.Rule)
	}
	switch {
	case e.Decision == "invalid":
		return fmt.Sprintf("%s: refused before any rule was asked (%s); no rule changes that", out, quoteIfNeeded(e.Reason))
	case host == "":
		return out + ": no host name (a TLS hello without SNI, or no Host): refused whatever the rules"
	case e.Port == 0:
		return out + ": no port: not decided by the rules"
	}
	allowed, detail := explainMatch(set, host, e.Port)
	var why []string
	if allowed {
		out += ", now allow by " + detail
		switch m, _ := set.Match(hp, e.Port); {
		case e.Decision != "allow":
			why = append(why, "a rule allows it now that did not then")
		case e.Upstream == "https" && m.Port.Protocol != rules.HTTPS:
			why = append(why, "it was sent with TLS originated; the port is now "+m.Port.Protocol.String()+": it would go in clear")
		case e.Upstream == "http" && m.Port.Protocol == rules.HTTPS:
			why = append(why, "it was sent in clear; the port is now HTTPS: egressd would originate TLS")
		}
	} else {
		out += ", now deny: " + detail
		switch e.Decision {
		case "would-deny":
			why = append(why, "in enforce mode: "+refusal(e.Protocol))
		case "allow":
			why = append(why, "the rules that allowed it then no longer do")
		}
	}
	// What else happened to it: an upstream failure, the address policy.
	if r := strings.TrimPrefix(strings.TrimPrefix(e.Reason, auditReason), "; "); r != "" && e.Decision != "deny" {
		why = append(why, "then: "+quoteIfNeeded(r))
	}
	if len(why) > 0 {
		out += "; " + strings.Join(why, "; ")
	}
	return out
}

// refusal is what a denied client of protocol gets.
func refusal(protocol string) string {
	switch protocol {
	case "tls-passthrough":
		return "a TLS access_denied alert"
	case "grpc":
		return "403 (gRPC PermissionDenied)"
	}
	return "403"
}

// auditReason is the reason l7 logs for a would-deny request (l7/audit.go).
const auditReason = "no egress rule allows the host and port (audit mode: forwarded)"

// quoteIfNeeded quotes s when it holds spaces or anything but printable
// ASCII: a value from a log line stays on its line.
func quoteIfNeeded(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f || s[i] == '"' {
			return strconv.QuoteToASCII(s)
		}
	}
	return s
}
