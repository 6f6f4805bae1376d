package explain

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/egressd/egressd/rules"
)

// SplitArg splits HOST[:PORT]; the port defaults to 80.
func SplitArg(arg string) (string, uint16, error) {
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

// Line answers one query in one greppable line.
func Line(set *rules.Set, host string, port uint16) string {
	hp := net.JoinHostPort(host, strconv.Itoa(int(port)))
	if ok, detail := match(set, host, port); ok {
		return "allow " + hp + " " + detail
	} else {
		return "deny  " + hp + " " + detail
	}
}

// match decides host on port: for an allowed one the rule, port,
// protocol, egress proxy and source; for a denied one why, and on which
// ports the host would be allowed.
func match(set *rules.Set, host string, port uint16) (bool, string) {
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
