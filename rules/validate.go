package rules

import (
	"fmt"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// ignoredDestination are the IstioService fields of destination that the
// reference page says are ignored for egress rules.
var ignoredDestination = []string{"name", "namespace", "domain", "labels"}

// spec validates an EgressRule's spec into r.rule, reporting every problem.
// It reports whether the rule is valid.
func (l *loader) spec(file string, n *yaml.Node, r *loadedRule) bool {
	before := len(l.problems)
	fs, ok := l.fields(file, n, "spec", "destination", "ports", "useEgressProxy")
	if !ok {
		return false
	}
	if d, ok := fs["destination"]; ok {
		l.destination(file, d, r.rule)
	} else {
		l.problem(file, n.Line, "spec.destination", "missing; add destination: with service: and the external host name")
	}
	if p, ok := fs["ports"]; ok {
		l.ports(file, p, r)
	} else {
		l.problem(file, n.Line, "spec.ports", "missing; list the ports of the service, e.g. ports: [{port: 443, protocol: HTTPS}]")
	}
	if u, ok := fs["useEgressProxy"]; ok {
		if u.Kind != yaml.ScalarNode || u.Tag != "!!bool" {
			l.problem(file, u.Line, "spec.useEgressProxy", "must be true or false, found %s", describe(u))
		} else {
			r.rule.UseEgressProxy, _ = strconv.ParseBool(u.Value)
		}
	}
	return len(l.problems) == before
}

func (l *loader) destination(file string, n *yaml.Node, r *Rule) {
	fs, ok := l.fields(file, n, "spec.destination", append([]string{"service"}, ignoredDestination...)...)
	if !ok {
		return
	}
	for _, f := range ignoredDestination {
		if v, ok := fs[f]; ok {
			l.warn(file, v.Line, "spec.destination."+f, "ignored: only service is used for egress rules")
		}
	}
	sv, ok := fs["service"]
	if !ok {
		l.problem(file, resolve(n).Line, "spec.destination.service", "missing; name the external host, e.g. service: api.example.com or service: \"*.example.com\"")
		return
	}
	l.warnUnquoted(file, sv)
	s := l.str(file, sv, "spec.destination.service")
	if s == "" && sv.Kind == yaml.ScalarNode && sv.Tag != "!!null" {
		l.problem(file, sv.Line, "spec.destination.service", "empty; name the external host, e.g. api.example.com")
		return
	}
	if s == "" {
		return
	}
	norm, _, _, err := normalizeService(s)
	if err != nil {
		l.problem(file, sv.Line, "spec.destination.service", "%v", err)
		return
	}
	r.Service = norm
}

func (l *loader) ports(file string, n *yaml.Node, r *loadedRule) {
	n = resolve(n)
	if n.Kind != yaml.SequenceNode {
		l.problem(file, n.Line, "spec.ports", "must be a list of {port, protocol}, found %s", describe(n))
		return
	}
	if len(n.Content) == 0 {
		l.problem(file, n.Line, "spec.ports", "empty; list at least one port, e.g. - port: 80 with protocol: HTTP")
		return
	}
	for i, item := range n.Content {
		path := "spec.ports[" + strconv.Itoa(i) + "]"
		fs, ok := l.fields(file, item, path, "port", "protocol")
		if !ok {
			continue
		}
		var p Port
		if v, ok := fs["port"]; ok {
			p.Number = l.portNumber(file, v, path+".port")
		} else {
			l.problem(file, item.Line, path+".port", "missing; add port: with a number from 1 to 65535")
		}
		if v, ok := fs["protocol"]; ok {
			// An empty string is a string, and not a protocol (it passed
			// here once and was refused by Compile without saying where).
			if s := l.str(file, v, path+".protocol"); s != "" || v.Kind == yaml.ScalarNode && v.Tag != "!!null" {
				proto, err := ParseProtocol(s)
				if err != nil {
					l.problem(file, v.Line, path+".protocol", "%q is not a protocol; use one of HTTP, HTTPS, GRPC, HTTP2", s)
				}
				p.Protocol = proto
			}
		} else {
			l.problem(file, item.Line, path+".protocol", "missing; add protocol: HTTP, HTTPS, GRPC or HTTP2")
		}
		for j, q := range r.rule.Ports {
			if q.Number == p.Number && p.Number != 0 && q.Protocol != p.Protocol && p.Protocol != 0 {
				l.problem(file, item.Line, path, "port %d is listed again with protocol %s, but spec.ports[%d] (line %d) says %s; keep one", p.Number, p.Protocol, j, r.portLines[j], q.Protocol)
			}
		}
		r.rule.Ports = append(r.rule.Ports, p)
		r.portLines = append(r.portLines, item.Line)
	}
}

func (l *loader) portNumber(file string, v *yaml.Node, field string) uint16 {
	var n int64
	if v.Kind != yaml.ScalarNode || v.Tag != "!!int" || v.Decode(&n) != nil {
		l.problem(file, v.Line, field, "must be a number from 1 to 65535 without quotes, found %s", describe(v))
		return 0
	}
	if n < 1 || n > 65535 {
		l.problem(file, v.Line, field, "%d is out of range; a port is a number from 1 to 65535", n)
		return 0
	}
	return uint16(n)
}

// checkConflicts reports a port of a service that two rules give different
// protocols or egress proxy settings, naming both places. Identical
// duplicates are fine.
func (l *loader) checkConflicts() {
	type key struct {
		service string
		port    uint16
	}
	type first struct {
		r    *loadedRule
		line int
		port Port
	}
	seen := make(map[key]first)
	for i := range l.rules {
		r := &l.rules[i]
		for j, p := range r.rule.Ports {
			k := key{r.rule.Service, p.Number}
			f, ok := seen[k]
			if !ok {
				seen[k] = first{r, r.portLines[j], p}
				continue
			}
			if f.r == r {
				continue // within one rule: reported by ports, or identical
			}
			where := fmt.Sprintf("%s:%d (rule %s)", f.r.file, f.line, f.r.rule.Name)
			switch {
			case f.port.Protocol != p.Protocol:
				l.problem(r.file, r.portLines[j], fmt.Sprintf("spec.ports[%d]", j),
					"port %d of %s is %s here but %s in %s; give both rules the same protocol or remove one", p.Number, r.rule.Service, p.Protocol, f.port.Protocol, where)
			case f.r.rule.UseEgressProxy != r.rule.UseEgressProxy:
				l.problem(r.file, r.portLines[j], fmt.Sprintf("spec.ports[%d]", j),
					"port %d of %s has useEgressProxy: %t here but %t in %s; give both rules the same useEgressProxy", p.Number, r.rule.Service, r.rule.UseEgressProxy, f.r.rule.UseEgressProxy, where)
			}
		}
	}
}
