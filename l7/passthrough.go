package l7

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/egressd/egressd/l7/internal/addrpolicy"
	"github.com/egressd/egressd/l7/internal/bridge"
	"github.com/egressd/egressd/l7/internal/sni"
)

// serveTLSPassthrough serves a connection that starts with a TLS handshake:
// the app does its own TLS. The SNI of its ClientHello (still unread in c.br)
// and the original port are decided against the rules; an allowed connection
// is spliced byte for byte to the upstream, anything else (no SNI, no rule,
// not a ClientHello) is closed. Nothing is decrypted. One access-log entry
// covers the whole connection.
func (p *Proxy) serveTLSPassthrough(c *clientConn) {
	e := accessEntry{
		start:    time.Now(),
		client:   c.client,
		orig:     c.orig,
		port:     c.orig.Port(),
		protocol: protoNameTLSPass,
		decision: decisionInvalid,
		scope:    &c.scope,
	}
	defer p.finish(&e)
	c.nc.SetReadDeadline(time.Now().Add(p.cfg.ReadHeaderTimeout))
	hello, br, err := sni.Peek(c.br)
	c.nc.SetReadDeadline(time.Time{})
	if err != nil {
		e.reason = err.Error()
		return
	}
	e.host = hello.ServerName
	if hello.ServerName == "" {
		e.decision = decisionDeny
		e.reason = "tls client hello without server name (SNI)"
		sendAlert(c.nc, alertUnrecognizedName)
		return
	}
	m, ok := p.decide(&e, hello.ServerName, e.port)
	if !ok {
		e.decision = decisionDeny
		e.reason = "no egress rule allows the host and port"
		sendAlert(c.nc, alertAccessDenied)
		return
	}
	e.decision, e.rule, e.upstream = decisionAllow, m.Rule.Name, "tls"
	up, err := p.dialUpstream(context.Background(), m, hello.ServerName, c.orig)
	if err != nil {
		var refused *addrpolicy.RefusedError
		if _, e.reason = p.upstreamError(err); errors.As(err, &refused) {
			sendAlert(c.nc, alertAccessDenied)
		} else {
			sendAlert(c.nc, alertInternalError)
		}
		return
	}
	defer up.Close()
	end := p.beginSplice(c, &splice{protocol: e.protocol, hosts: []string{hello.ServerName}, port: e.port, rule: m.Rule.Name, client: c.nc, up: up})
	e.bytesIn, e.bytesOut, err = bridge.Conns(c.nc, br, up, p.cfg.IdleTimeout)
	if cut := end(); cut != "" {
		e.reason = cut
	} else if err != nil && !bridge.IsPeerReset(err) {
		e.reason = "spliced connection failed: " + err.Error()
	}
}

// TLS alert descriptions (RFC 8446 6) egressd sends in place of a
// ServerHello when it will not splice a passthrough connection, so that the
// app's error says why ("tls: access denied") instead of "EOF".
const (
	alertAccessDenied     = 49
	alertInternalError    = 80
	alertUnrecognizedName = 112
)

// sendAlert writes one fatal alert record (plaintext: no handshake has
// happened), best effort: the connection is closed next anyway.
func sendAlert(nc net.Conn, desc byte) {
	nc.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = nc.Write([]byte{21, 3, 3, 0, 2, 2, desc})
}
