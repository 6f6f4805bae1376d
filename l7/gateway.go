package l7

// The gateway: egressd as the dedicated egress proxy (`egressd gateway`).
// Clients (egressd agents with --egress-proxy, or anything configured with
// an explicit HTTP proxy) send CONNECT host:port or absolute-form requests;
// the host and port they name are decided against the same rules as the
// sidecar path, logged and counted alike, and so is every request inside a
// CONNECT tunnel. Everything else is refused: the gateway is never an open
// proxy. Which request forms it takes and the port each targets are
// l7/internal/gateway's; here is the request flow on the connection.

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/egressd/egressd/l7/internal/body"
	"github.com/egressd/egressd/l7/internal/bridge"
	"github.com/egressd/egressd/l7/internal/gateway"
	"github.com/egressd/egressd/l7/internal/sni"
	"github.com/egressd/egressd/rules"
)

// protoNameConnect is the access-log protocol of a gateway CONNECT tunnel.
const protoNameConnect = "connect"

// ServeGateway serves ln as an explicit HTTP proxy until Shutdown (then it
// returns ErrProxyClosed) or until ln fails:
//   - CONNECT host:port: allowed when a rule matches host on port; then the
//     tunnel is served like a connection redirected to port: a TLS
//     ClientHello must name (SNI) an allowed host too and is spliced; h2c
//     and HTTP/1.x requests are each decided on their own authority
//     (gatewayConnect).
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
	if string(r.Bytes(r.Method)) == "CONNECT" {
		return s.gatewayConnect()
	}
	if status, reason := r.Check(); status != 0 {
		s.entry.decision = decisionInvalid
		s.local(status, reason, markerInvalid, true)
		return false
	}
	s.entry.host = string(r.Bytes(r.Authority))
	if !r.Absolute {
		s.entry.decision = decisionDeny
		keep := s.keepAlive() && s.discardBody()
		s.local(403, "this is an egress proxy: send CONNECT host:port or absolute-form requests (http://host/path)", markerDenied, !keep)
		return keep
	}
	port, ok := gateway.AbsolutePort(r)
	if !ok {
		s.entry.decision = decisionInvalid
		s.local(400, "invalid port in the request target", markerInvalid, true)
		return false
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
	m, ok := s.p.decideConn(s.c, &s.entry, s.entry.host, port)
	if !ok {
		return m, false
	}
	s.entry.decision, s.entry.rule = decisionAllow, m.Rule.Name
	return m, true
}

// gatewayConnect answers CONNECT host:port: 403 unless a rule allows it,
// else 200 and a tunnel, served by what the client sends into it (as the
// agent serves a connection redirected to that port):
//   - a TLS ClientHello: its server name must be allowed on port too; then
//     the bytes are spliced to the upstream until either side ends;
//   - h2c or HTTP/1.x: every request inside is decided on its own
//     :authority or Host against the rules on port and forwarded like the
//     agent forwards it (serveTunnelRequests), so that a tunnel to an
//     allowed name cannot carry requests for another (domain fronting).
//
// The upstream is dialled before the 200, so that a target the address
// policy refuses, or that cannot be reached, is answered at the CONNECT
// (403, 502); a tunnel carrying requests closes that connection unused.
func (s *h1conn) gatewayConnect() bool {
	r, c := &s.req, s.c
	s.entry.protocol = protoNameConnect
	port, ok := gateway.ConnectPort(r)
	if !ok {
		s.entry.decision = decisionInvalid
		s.local(400, "CONNECT needs a host:port target and no body", markerInvalid, true)
		return false
	}
	s.entry.host = string(r.Bytes(r.Target))
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
	defer func() {
		if up != nil {
			up.Close()
		}
	}()
	c.bw.WriteString("HTTP/1.1 200 Connection established\r\n\r\n")
	if err := c.bw.Flush(); err != nil {
		s.entry.reason = "client went away"
		s.p.finish(&s.entry)
		return false
	}
	s.entry.status = 200
	c.nc.SetReadDeadline(time.Now().Add(s.p.cfg.ReadHeaderTimeout))
	switch sniffReader(c.br) {
	case protoNone:
		s.entry.reason = "tunnel: the client sent nothing"
		s.p.finish(&s.entry)
		return false
	case protoH2C:
		up.Close()
		up = nil
		s.serveTunnelRequests(true)
		return false
	case protoHTTP1:
		up.Close()
		up = nil
		return s.serveTunnelRequests(false)
	}
	src, sni, ok := s.tunnelNameAllowed(port)
	if !ok {
		s.p.finish(&s.entry)
		return false
	}
	c.nc.SetDeadline(time.Time{})
	end := s.p.beginSplice(c, &splice{protocol: protoNameConnect, hosts: []string{s.entry.host, sni}, port: port, rule: m.Rule.Name, client: c.nc, up: up})
	s.entry.bytesIn, s.entry.bytesOut, err = bridge.Conns(c.nc, src, up, s.p.cfg.IdleTimeout)
	if cut := end(); cut != "" {
		s.entry.reason = cut
	} else if err != nil {
		s.entry.reason = "tunnel failed: " + err.Error()
	}
	s.p.finish(&s.entry)
	return false
}

// upstreamTunnelRequests is the access-log upstream of a CONNECT tunnel
// whose requests are decided and forwarded one by one (each logged too).
const upstreamTunnelRequests = "requests"

// serveTunnelRequests serves an allowed tunnel that carries HTTP/1.x or
// h2c (h2) the way the agent serves a connection redirected to the CONNECT
// port: the CONNECT's access-log line is written now, and each request
// inside is decided, forwarded and logged on its own, with the CONNECT
// target as its orig_dst. A request no rule allows gets the agent's 403
// ("egressd: no egress rule allows evil.example on port 80"); h2c streams
// are refused one by one, the connection stays up. For HTTP/1.x it
// returns true: the caller's request loop goes on inside the tunnel.
func (s *h1conn) serveTunnelRequests(h2 bool) bool {
	c := s.c
	s.entry.upstream = upstreamTunnelRequests
	s.p.finish(&s.entry)
	c.gateway, c.tunnel, c.origText = false, true, s.entry.origText
	c.nc.SetDeadline(time.Time{})
	c.rdl, c.wdl = body.Deadline{}, body.Deadline{}
	if h2 {
		s.p.serveH2C(c)
		return false
	}
	s.origText = c.origText
	return true
}

// decideConn is decide for a request on c. On a gateway connection (and in
// its tunnels) a rule's useEgressProxy is served directly: the gateway is
// the egress proxy, unless Config.EgressProxy chains it to another one.
func (p *Proxy) decideConn(c *clientConn, e *accessEntry, host string, port uint16) (rules.Match, bool) {
	m, ok := p.decide(e, host, port)
	if ok && (c.gateway || c.tunnel) && p.egress == nil {
		m.UseEgressProxy = false
	}
	return m, ok
}

// tunnelNameAllowed reads the TLS ClientHello at the head of a tunnel
// (within ReadHeaderTimeout): it must name a server (SNI), as in
// passthrough, and that name must be allowed on port too, so that a tunnel
// to an allowed name cannot carry a handshake for another one served from
// the same address (domain fronting). It returns the reader to relay the
// client's bytes from, and the server name; false: close the tunnel
// (s.entry says why).
func (s *h1conn) tunnelNameAllowed(port uint16) (io.Reader, string, bool) {
	c := s.c
	hello, br, err := sni.Peek(c.br)
	if err != nil {
		s.entry.decision, s.entry.reason = decisionInvalid, "tunnel: "+err.Error()
		return nil, "", false
	}
	if hello.ServerName == "" {
		s.entry.decision = decisionDeny
		s.entry.reason = "tunnel: tls client hello without server name (SNI)"
		sendAlert(c.nc, alertUnrecognizedName)
		return nil, "", false
	}
	if _, ok := s.p.decide(&s.entry, hello.ServerName, port); !ok {
		s.entry.decision = decisionDeny
		s.entry.reason = "tunnel: no rule allows the TLS server name " + hello.ServerName + " on port " + strconv.Itoa(int(port))
		sendAlert(c.nc, alertAccessDenied)
		return nil, "", false
	}
	return br, hello.ServerName, true
}
