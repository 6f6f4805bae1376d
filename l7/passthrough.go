package l7

import (
	"context"
	"errors"
	"time"

	"github.com/egressd/egressd/l7/internal/addrpolicy"
	"github.com/egressd/egressd/l7/internal/bridge"
	"github.com/egressd/egressd/l7/internal/client"
	"github.com/egressd/egressd/l7/internal/sni"
)

// serveTLSPassthrough serves a connection that starts with a TLS handshake:
// the app does its own TLS. The SNI of its ClientHello (still unread in c.br)
// and the original port are decided against the rules; an allowed connection
// is spliced byte for byte to the upstream, anything else (no SNI, no rule,
// not a ClientHello) is closed. Nothing is decrypted. One access-log entry
// covers the whole connection.
func (p *Proxy) serveTLSPassthrough(c *client.Conn) {
	e := client.Entry{
		Start:    time.Now(),
		Client:   c.Client,
		Orig:     c.Orig,
		Port:     c.Orig.Port(),
		Protocol: client.ProtoTLSPass,
		Decision: client.DecisionInvalid,
		Scope:    &c.Scope,
	}
	defer p.finish(&e)
	c.NC.SetReadDeadline(time.Now().Add(p.cfg.ReadHeaderTimeout))
	hello, br, err := sni.Peek(c.BR)
	c.NC.SetReadDeadline(time.Time{})
	if err != nil {
		e.Reason = err.Error()
		return
	}
	e.Host = hello.ServerName
	if hello.ServerName == "" {
		e.Decision = client.DecisionDeny
		e.Reason = "tls client hello without server name (SNI)"
		sni.SendAlert(c.NC, sni.AlertUnrecognizedName)
		return
	}
	m, ok := p.decide(&e, hello.ServerName, e.Port)
	if !ok {
		e.Decision = client.DecisionDeny
		e.Reason = "no egress rule allows the host and port"
		sni.SendAlert(c.NC, sni.AlertAccessDenied)
		return
	}
	e.Decision, e.Rule, e.Upstream = client.DecisionAllow, m.Rule.Name, "tls"
	up, err := p.dialer.Upstream(context.Background(), m, hello.ServerName, c.Orig)
	if err != nil {
		var refused *addrpolicy.RefusedError
		if _, e.Reason = p.upstreamError(err); errors.As(err, &refused) {
			sni.SendAlert(c.NC, sni.AlertAccessDenied)
		} else {
			sni.SendAlert(c.NC, sni.AlertInternalError)
		}
		return
	}
	defer up.Close()
	end := p.beginSplice(c, &client.Splice{Protocol: e.Protocol, Hosts: []string{hello.ServerName}, Port: e.Port, Rule: m.Rule.Name, Client: c.NC, Up: up})
	e.BytesIn, e.BytesOut, err = bridge.Conns(c.NC, br, up, p.cfg.IdleTimeout)
	if cut := end(); cut != "" {
		e.Reason = cut
	} else if err != nil && !bridge.IsPeerReset(err) {
		e.Reason = "spliced connection failed: " + err.Error()
	}
}
