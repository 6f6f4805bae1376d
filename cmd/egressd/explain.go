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

	"github.com/egressd/egressd/rules"
)

const explainUsage = `usage: egressd explain --rules PATH [--] HOST[:PORT]...

Prints, for each HOST[:PORT] (port 80 when none is given; IPv6 as
[2001:db8::1]:443), one line saying whether egressd would allow it, by which
rule, on which port and protocol, and whether through the egress proxy:

  allow api.foo.com:443 rule=foo-egress-rule service=*.foo.com port=443 protocol=HTTPS egress-proxy=no source=rules.yaml:1
  deny  evil.test:80 no egress rule allows evil.test on port 80

Flags come before the hosts. A HOST beginning with '-' must follow '--',
or it is read as a flag: egressd explain --rules rules.yaml -- -x.foo.com

Exit status: 0 when the rules are valid (whatever the answers), 1 when they
are not, 2 on a usage error.

Flags:
`

// explainCmd implements `egressd explain`.
func explainCmd(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("egressd explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, explainUsage); fs.PrintDefaults() }
	path := fs.String("rules", os.Getenv("EGRESSD_RULES"), "EgressRule `file or directory` (env EGRESSD_RULES)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return exitError{exitUsage}
	}
	if *path == "" || fs.NArg() == 0 {
		fmt.Fprintln(stderr, "egressd explain: give --rules PATH and at least one HOST[:PORT]")
		fs.Usage()
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
	m, ok := set.Match(hp, port)
	if !ok {
		line := fmt.Sprintf("deny  %s no egress rule allows %s on port %d", hp, host, port)
		if other := otherPorts(set, hp); other != "" {
			line += " (" + other + ")"
		}
		return line
	}
	proxy := "no"
	if m.UseEgressProxy {
		proxy = "yes"
	}
	return fmt.Sprintf("allow %s rule=%s service=%s port=%d protocol=%s egress-proxy=%s source=%s",
		hp, m.Rule.Name, m.Rule.Service, m.Port.Number, m.Port.Protocol, proxy, m.Rule.Source)
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
