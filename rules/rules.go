package rules

import (
	"fmt"
	"net/netip"
	"strings"
)

// Protocol is the protocol of an external service port.
type Protocol uint8

// The protocols an EgressRule port may name (case-insensitive in rule files).
const (
	HTTP Protocol = iota + 1
	HTTPS
	GRPC
	HTTP2
)

// String returns the protocol's canonical upper-case name ("HTTPS").
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

// ParseProtocol parses a protocol name in any case: "http", "Https", "GRPC", "http2".
func ParseProtocol(s string) (Protocol, error) {
	switch strings.ToUpper(s) {
	case "HTTP":
		return HTTP, nil
	case "HTTPS":
		return HTTPS, nil
	case "GRPC":
		return GRPC, nil
	case "HTTP2":
		return HTTP2, nil
	}
	return 0, fmt.Errorf("unknown protocol %q", s)
}

// Port is one port of an external service and its protocol.
type Port struct {
	Number   uint16
	Protocol Protocol
}

// Rule is one validated, normalized EgressRule.
type Rule struct {
	Name           string // metadata.name, or the file:line of the document when unnamed
	Service        string // destination.service, lower-cased, IDNA-converted, without trailing dot
	Ports          []Port
	UseEgressProxy bool
	Source         string // "file:line" of the document
}

// Match is the answer of Set.Match for an allowed host and port.
type Match struct {
	Rule           *Rule
	Port           Port // the rule's entry for the requested port
	UseEgressProxy bool
}

// Literal is the IP address m's rule names literally as its service (the
// address policy lets it through, and upstream connection pools are keyed
// by it); zero for a name or no rule.
func (m Match) Literal() netip.Addr {
	if m.Rule == nil || !maybeIPLiteral(m.Rule.Service) {
		return netip.Addr{}
	}
	a, _ := netip.ParseAddr(m.Rule.Service)
	return a.Unmap()
}

// maybeIPLiteral: s could be an IP address (IPv4 starts with a digit, IPv6
// holds a colon). Literal runs on every request: netip.ParseAddr allocates
// its error for a name (48 B per request, the keep-alive path's only
// allocation once).
func maybeIPLiteral(s string) bool {
	return s != "" && (s[0] >= '0' && s[0] <= '9' || strings.IndexByte(s, ':') >= 0)
}
