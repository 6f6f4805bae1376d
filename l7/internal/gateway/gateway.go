// Package gateway reads what a request to egressd's explicit proxy
// (`egressd gateway`, l7.ServeGateway) asks for: the two forms an egress
// proxy is sent, CONNECT host:port (RFC 9110 §9.3.6, the authority form)
// and absolute-form requests (http://host[:port]/path, RFC 9112 §3.2.2),
// and the port each one targets. No networking and no decision: l7's
// gateway.go decides the target against the rules, answers, dials and
// splices, on its HTTP/1.x connections.
//
// Why a package of its own: which request heads an explicit proxy takes
// and which port they name is a small contract with its own traps (an IPv6
// address without brackets, port 0 or past 65535, a CONNECT with a body or
// two Host fields, the scheme's default port), tested and fuzzed on the
// parsed head (l7/internal/h1) without a proxy.
//
// Files: gateway.go (AuthorityPort, ConnectPort, AbsolutePort).
package gateway

import (
	"bytes"
	"strconv"

	"github.com/egressd/egressd/l7/internal/h1"
)

// ConnectPort is the port of a CONNECT request's host:port target; false
// when the target is not a valid authority with a port, or the request is
// ambiguous (several Host fields, a body, a Transfer-Encoding other than
// chunked): such a CONNECT is refused with 400.
func ConnectPort(r *h1.Request) (uint16, bool) {
	target := r.Bytes(r.Target)
	port, ok := AuthorityPort(target)
	if !ok || port == 0 || !h1.ValidAuthority(target, true) || r.Hosts > 1 || r.HasBody() || r.TeOther {
		return 0, false
	}
	return port, true
}

// AbsolutePort is the port an absolute-form request targets (r has passed
// Check, which sets its authority): the authority's, else the scheme's
// default (443 for https://, 80); false when the authority's port is
// invalid.
func AbsolutePort(r *h1.Request) (uint16, bool) {
	port, ok := AuthorityPort(r.Bytes(r.Authority))
	switch {
	case !ok:
		return 0, false
	case port == 0 && h1.HasPrefixFold(r.Bytes(r.Target), "https://"):
		return 443, true
	case port == 0:
		return 80, true
	}
	return port, true
}

// AuthorityPort returns the port of a host[:port] authority, 0 when it has
// none; ok is false when the port is not a number in 1-65535.
func AuthorityPort(a []byte) (port uint16, ok bool) {
	i := bytes.LastIndexByte(a, ':')
	if i < 0 || a[0] == '[' && bytes.LastIndexByte(a, ']') > i {
		return 0, true
	}
	if a[0] != '[' && bytes.IndexByte(a[:i], ':') >= 0 {
		return 0, false // an IPv6 address without brackets
	}
	n, err := strconv.ParseUint(string(a[i+1:]), 10, 16)
	if err != nil || n == 0 {
		return 0, false
	}
	return uint16(n), true
}
