package l7

// The gateway: egressd as the dedicated egress proxy (`egressd gateway`).
// Clients (egressd agents with --egress-proxy, or anything configured with
// an explicit HTTP proxy) send CONNECT host:port or absolute-form requests;
// the host and port they name are decided against the same rules as the
// sidecar path, logged and counted alike. Everything else is refused: the
// gateway is never an open proxy.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/egressd/egressd/rules"
)

// protoNameConnect is the access-log protocol of a gateway CONNECT tunnel.
const protoNameConnect = "connect"

// ServeGateway serves ln as an explicit HTTP proxy until Shutdown (then it
// returns ErrProxyClosed) or until ln fails:
//   - CONNECT host:port: allowed when a rule matches host on port; then the
//     bytes are tunnelled as they are; a TLS ClientHello at their head must
//     name (SNI) an allowed host too.
//   - absolute-form requests (GET http://host[:port]/path): host and port
//     (default: the scheme's) are decided per request and forwarded like
//     the sidecar path (TLS originated on ports the rule marks HTTPS).
//   - anything else: origin-form requests, and CONNECT or absolute form to a
//     host or port no rule allows, get 403; malformed requests 400.
//
// In the access log, orig_dst is the target asked for (host:port, the
// scheme's port when the absolute form names none), or the gateway's own
// address for a request that names no usable target.
//
// Proxy-Authorization is consumed, never forwarded (the gateway does not
// check it). Rules with useEgressProxy are served directly: the gateway is
// the egress proxy, unless Config.EgressProxy chains it to another one.
// Config.OriginalDst is not used; DialMode must be DialResolve. ln may be a
// TLS listener (tls.NewListener): agents then use an https:// egress proxy
// URL, and the hop to the gateway is encrypted too.
func (p *Proxy) ServeGateway(ln net.Listener) error {
	if p.cfg.DialMode != DialResolve {
		return errors.New("l7: gateway: DialMode must be DialResolve: an explicit proxy has no original destination")
	}
	return p.serve(ln, true)
}

// serveGateway serves one gateway client connection (HTTP/1.x only).
func (p *Proxy) serveGateway(c *clientConn) {
	if p.awaitFirstBytes(c) {
		p.serveHTTP1(c)
	}
}

// serveGatewayRequest decides and answers one gateway request whose head
// is parsed; false: close the connection.
func (s *h1conn) serveGatewayRequest() bool {
	r := &s.req
	s.entry.orig = s.c.local // logged until gatewayDecide knows the target: there is no original destination
	if string(r.bytes(r.method)) == "CONNECT" {
		return s.gatewayConnect()
	}
	if status, reason := r.check(); status != 0 {
		s.entry.decision = decisionInvalid
		s.local(status, reason, markerInvalid, true)
		return false
	}
	s.entry.host = string(r.bytes(r.authority))
	if !r.absolute {
		s.entry.decision = decisionDeny
		keep := s.keepAlive() && s.discardBody()
		s.local(403, "this is an egress proxy: send CONNECT host:port or absolute-form requests (http://host/path)", markerDenied, !keep)
		return keep
	}
	port, ok := authorityPort(r.bytes(r.authority))
	switch {
	case !ok:
		s.entry.decision = decisionInvalid
		s.local(400, "invalid port in the request target", markerInvalid, true)
		return false
	case port == 0 && hasPrefixFold(r.bytes(r.target), "https://"):
		port = 443
	case port == 0:
		port = 80
	}
	m, ok := s.gatewayDecide(port)
	if !ok {
		return s.deny()
	}
	return s.forward(m)
}

// gatewayDecide matches s.entry.host on port and points the connection's
// destination port there for forward. The access log's orig_dst becomes the
// target asked for, host:port.
func (s *h1conn) gatewayDecide(port uint16) (rules.Match, bool) {
	s.entry.port = port
	s.entry.origText = net.JoinHostPort(hostOnly(s.entry.host), strconv.Itoa(int(port)))
	s.c.orig = netip.AddrPortFrom(netip.Addr{}, port)
	m, ok := s.p.decide(&s.entry, s.entry.host, port)
	if !ok {
		return m, false
	}
	s.entry.decision, s.entry.rule = decisionAllow, m.Rule.Name
	if s.p.egress == nil {
		m.UseEgressProxy = false // the gateway is the egress proxy
	}
	return m, true
}

// gatewayConnect answers CONNECT host:port: 403 unless a rule allows it,
// else 200 and a byte tunnel to the upstream until either side ends.
func (s *h1conn) gatewayConnect() bool {
	r, c := &s.req, s.c
	s.entry.protocol = protoNameConnect
	target := r.bytes(r.target)
	port, ok := authorityPort(target)
	if !ok || port == 0 || !validAuthority(target, true) || r.hosts > 1 || r.hasBody() || r.teOther {
		s.entry.decision = decisionInvalid
		s.local(400, "CONNECT needs a host:port target and no body", markerInvalid, true)
		return false
	}
	s.entry.host = string(target)
	m, ok := s.gatewayDecide(port)
	if !ok {
		return s.deny()
	}
	s.entry.upstream = "tunnel"
	up, err := s.p.dialUpstream(context.Background(), m, hostOnly(s.entry.host), c.orig)
	if err != nil {
		status, reason := s.p.upstreamError(err)
		s.local(status, reason, markerError, true)
		return false
	}
	defer up.Close()
	c.bw.WriteString("HTTP/1.1 200 Connection established\r\n\r\n")
	if err := c.bw.Flush(); err != nil {
		s.entry.reason = "client went away"
		s.p.finish(&s.entry)
		return false
	}
	s.entry.status = 200
	src, ok := s.tunnelNameAllowed(port)
	if !ok {
		s.p.finish(&s.entry)
		return false
	}
	c.nc.SetDeadline(time.Time{})
	s.entry.bytesIn, s.entry.bytesOut, err = splice(c.nc, src, up, s.p.cfg.IdleTimeout)
	if err != nil {
		s.entry.reason = "tunnel failed: " + err.Error()
	}
	s.p.finish(&s.entry)
	return false
}

// tunnelNameAllowed looks at the first bytes the client sends into a tunnel
// (within ReadHeaderTimeout): when they are a TLS ClientHello, it must name
// a server (SNI), as in passthrough, and that name must be allowed on port too, so that a tunnel to an
// allowed name cannot carry a handshake for another one served from the same
// address (domain fronting). It returns the reader to relay the client's
// bytes from; false: close the tunnel (s.entry says why).
func (s *h1conn) tunnelNameAllowed(port uint16) (io.Reader, bool) {
	c := s.c
	c.nc.SetReadDeadline(time.Now().Add(s.p.cfg.ReadHeaderTimeout))
	b, err := c.br.Peek(1)
	if err != nil {
		s.entry.reason = "tunnel: the client sent nothing"
		return nil, false
	}
	if b[0] != 0x16 { // not TLS (h2c from an agent, plain HTTP): the CONNECT decision stands
		return c.br, true
	}
	hello, br, err := peekClientHello(c.br)
	if err != nil {
		s.entry.decision, s.entry.reason = decisionInvalid, "tunnel: "+err.Error()
		return nil, false
	}
	if hello.serverName == "" {
		s.entry.decision = decisionDeny
		s.entry.reason = "tunnel: tls client hello without server name (SNI)"
		sendAlert(c.nc, alertUnrecognizedName)
		return nil, false
	}
	if _, ok := s.p.decide(&s.entry, hello.serverName, port); !ok {
		s.entry.decision = decisionDeny
		s.entry.reason = "tunnel: no rule allows the TLS server name " + hello.serverName + " on port " + strconv.Itoa(int(port))
		sendAlert(c.nc, alertAccessDenied)
		return nil, false
	}
	return br, true
}

// authorityPort returns the port of a host[:port] authority, 0 when it has
// none; ok is false when the port is not a number in 1-65535.
func authorityPort(a []byte) (port uint16, ok bool) {
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
