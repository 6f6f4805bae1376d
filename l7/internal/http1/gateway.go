package http1

// The gateway's requests: egressd as the dedicated egress proxy (`egressd
// gateway`, l7.Proxy.ServeGateway).
// Clients (egressd agents with --egress-proxy, or anything configured with
// an explicit HTTP proxy) send CONNECT host:port or absolute-form requests;
// the host and port they name are decided against the same rules as the
// sidecar path, logged and counted alike, and so is every request inside a
// CONNECT tunnel. Everything else is refused: the gateway is never an open
// proxy. Which request forms it takes and the port each targets are
// l7/internal/gateway's; here is the request flow on the connection.

import (
	"context"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/egressd/egressd/l7/internal/body"
	"github.com/egressd/egressd/l7/internal/bridge"
	"github.com/egressd/egressd/l7/internal/client"
	"github.com/egressd/egressd/l7/internal/gateway"
	"github.com/egressd/egressd/l7/internal/sni"
	"github.com/egressd/egressd/rules"
)

// serveGatewayRequest decides and answers one gateway request whose head
// is parsed; false: close the connection.
func (s *h1conn) serveGatewayRequest() bool {
	r := &s.req
	s.entry.Orig = s.c.Local // logged until gatewayDecide knows the target: there is no original destination
	if string(r.Bytes(r.Method)) == "CONNECT" {
		return s.gatewayConnect()
	}
	if status, reason := r.Check(); status != 0 {
		s.entry.Decision = client.DecisionInvalid
		s.local(status, reason, client.MarkerInvalid, true)
		return false
	}
	s.entry.Host = string(r.Bytes(r.Authority))
	if !r.Absolute {
		s.entry.Decision = client.DecisionDeny
		keep := s.keepAlive() && s.discardBody()
		s.local(403, "this is an egress proxy: send CONNECT host:port or absolute-form requests (http://host/path)", client.MarkerDenied, !keep)
		return keep
	}
	port, ok := gateway.AbsolutePort(r)
	if !ok {
		s.entry.Decision = client.DecisionInvalid
		s.local(400, "invalid port in the request target", client.MarkerInvalid, true)
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
	s.entry.Port = port
	s.entry.OrigText = net.JoinHostPort(rules.HostOnly(s.entry.Host), strconv.Itoa(int(port)))
	s.c.Orig = netip.AddrPortFrom(netip.Addr{}, port)
	m, ok := s.srv.host.Decide(s.c, &s.entry, s.entry.Host, port)
	if !ok {
		return m, false
	}
	s.entry.Decision, s.entry.Rule = client.DecisionAllow, m.Rule.Name
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
	s.entry.Protocol = client.ProtoConnect
	port, ok := gateway.ConnectPort(r)
	if !ok {
		s.entry.Decision = client.DecisionInvalid
		s.local(400, "CONNECT needs a host:port target and no body", client.MarkerInvalid, true)
		return false
	}
	s.entry.Host = string(r.Bytes(r.Target))
	m, ok := s.gatewayDecide(port)
	if !ok {
		return s.deny()
	}
	s.entry.Upstream = "tunnel"
	up, err := s.srv.cfg.Dialer.Upstream(context.Background(), m, rules.HostOnly(s.entry.Host), c.Orig)
	if err != nil {
		status, reason := s.srv.host.UpstreamError(err)
		s.local(status, reason, client.MarkerError, true)
		return false
	}
	defer func() {
		if up != nil {
			up.Close()
		}
	}()
	c.BW.WriteString("HTTP/1.1 200 Connection established\r\n\r\n")
	if err := c.BW.Flush(); err != nil {
		s.entry.Reason = "client went away"
		s.srv.finish(&s.entry)
		return false
	}
	s.entry.Status = 200
	c.NC.SetReadDeadline(time.Now().Add(s.srv.cfg.ReadHeaderTimeout))
	switch client.Sniff(c.BR) {
	case client.None:
		s.entry.Reason = "tunnel: the client sent nothing"
		s.srv.finish(&s.entry)
		return false
	case client.H2C:
		up.Close()
		up = nil
		s.serveTunnelRequests(true)
		return false
	case client.HTTP1:
		up.Close()
		up = nil
		return s.serveTunnelRequests(false)
	}
	src, sni, ok := s.tunnelNameAllowed(port)
	if !ok {
		s.srv.finish(&s.entry)
		return false
	}
	c.NC.SetDeadline(time.Time{})
	end := s.srv.host.BeginSplice(c, &client.Splice{Protocol: client.ProtoConnect, Hosts: []string{s.entry.Host, sni}, Port: port, Rule: m.Rule.Name, Client: c.NC, Up: up})
	s.entry.BytesIn, s.entry.BytesOut, err = bridge.Conns(c.NC, src, up, s.srv.cfg.IdleTimeout)
	if cut := end(); cut != "" {
		s.entry.Reason = cut
	} else if err != nil {
		s.entry.Reason = "tunnel failed: " + err.Error()
	}
	s.srv.finish(&s.entry)
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
	s.entry.Upstream = upstreamTunnelRequests
	s.srv.finish(&s.entry)
	c.Gateway, c.Tunnel, c.OrigText = false, true, s.entry.OrigText
	c.NC.SetDeadline(time.Time{})
	c.RDL, c.WDL = body.Deadline{}, body.Deadline{}
	if h2 {
		s.srv.host.ServeH2C(c)
		return false
	}
	s.origText = c.OrigText
	return true
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
	hello, br, err := sni.Peek(c.BR)
	if err != nil {
		s.entry.Decision, s.entry.Reason = client.DecisionInvalid, "tunnel: "+err.Error()
		return nil, "", false
	}
	if hello.ServerName == "" {
		s.entry.Decision = client.DecisionDeny
		s.entry.Reason = "tunnel: tls client hello without server name (SNI)"
		sni.SendAlert(c.NC, sni.AlertUnrecognizedName)
		return nil, "", false
	}
	if _, ok := s.srv.host.Decide(s.c, &s.entry, hello.ServerName, port); !ok {
		s.entry.Decision = client.DecisionDeny
		s.entry.Reason = "tunnel: no rule allows the TLS server name " + hello.ServerName + " on port " + strconv.Itoa(int(port))
		sni.SendAlert(c.NC, sni.AlertAccessDenied)
		return nil, "", false
	}
	return br, hello.ServerName, true
}
