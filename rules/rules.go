// Package rules is egressd's model of Istio's EgressRule: it decodes rule files,
// validates them, and compiles them into a Set that answers which rule (if any)
// allows a host and port.
//
// PLACEHOLDER API (to be replaced by the rules implementation): the exported
// names below are the contract other packages code against.
package rules

import "strings"

// Protocol is the protocol of an external service port.
type Protocol uint8

// The protocols an EgressRule port may name (case-insensitive in rule files).
const (
	HTTP Protocol = iota + 1
	HTTPS
	GRPC
	HTTP2
)

func (p Protocol) String() string {
	switch p {
	case HTTP:
		return "HTTP"
	case HTTPS:
		return "HTTPS"
	case GRPC:
		return "GRPC"
	case HTTP2:
		return "HTTP2"
	}
	return "UNKNOWN"
}

// Port is one port of an external service and its protocol.
type Port struct {
	Number   uint16
	Protocol Protocol
}

// Rule is one validated, normalized EgressRule.
type Rule struct {
	Name           string // metadata.name, or the file:line of the document when unnamed
	Service        string // destination.service, lower-cased, without trailing dot
	Ports          []Port
	UseEgressProxy bool
	Source         string // "file:line" of the document
}

// Match is the answer of Set.Match for an allowed host and port.
type Match struct {
	Rule           *Rule
	Port           Port
	UseEgressProxy bool
}

// Set is a compiled, immutable set of rules. It is safe for concurrent use.
type Set struct{ rules []*Rule }

// Compile builds a Set from already-validated rules.
func Compile(rs []*Rule) (*Set, error) { return &Set{rules: rs}, nil }

// Len reports the number of rules.
func (s *Set) Len() int { return len(s.rules) }

// Match reports the rule that allows host on port, if any. host may carry a
// port and a trailing dot; matching is case-insensitive.
func (s *Set) Match(host string, port uint16) (Match, bool) {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	for _, r := range s.rules {
		if r.Service == host || r.Service == "*" {
			for _, p := range r.Ports {
				if p.Number == port {
					return Match{Rule: r, Port: p, UseEgressProxy: r.UseEgressProxy}, true
				}
			}
		}
	}
	return Match{}, false
}
