package rules

import (
	"fmt"
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
