package l7

import (
	"runtime/debug"
	"time"

	"github.com/egressd/egressd/l7/internal/client"
	"github.com/egressd/egressd/l7/internal/limit"
)

// serveConn runs one accepted connection to its end: the original
// destination, admission by cgroup, the scope, then the protocol its first
// bytes say (l7/internal/client's Sniff).
func (p *Proxy) serveConn(c *client.Conn) {
	defer func() { p.limits.Release(c.LimitKey) }()
	defer p.trackConn(c, false)
	defer func() {
		if r := recover(); r != nil {
			p.log.Error("panic serving connection", "client", c.Client, "orig", c.Orig, "panic", r, "stack", string(debug.Stack()))
		}
		c.Release()
	}()
	if c.Gateway {
		p.serveGateway(c)
		return
	}
	orig, cgroup, ok := p.lookup(c)
	if !ok {
		p.metrics.OrigMisses.Inc()
		p.log.Warn("no original destination: closing", "client", c.Client, "local", c.Local)
		return
	}
	if c.LimitKey == (limit.Key{}) && !p.admitCgroup(c, cgroup) {
		return
	}
	c.Orig = orig
	if p.cfg.Scopes != nil {
		c.Scope = p.cfg.Scopes.Scope(cgroup)
	}
	switch p.sniff(c) {
	case client.H2C:
		p.serveH2C(c)
	case client.TLS:
		p.serveTLSPassthrough(c)
	case client.HTTP1:
		p.h1.Serve(c)
	}
}

// sniff waits for the first bytes (within ReadHeaderTimeout of accept) and
// classifies them.
func (p *Proxy) sniff(c *client.Conn) client.Protocol {
	defer c.NC.SetReadDeadline(time.Time{})
	if !c.AwaitFirstBytes(p.cfg.ReadHeaderTimeout) {
		return client.None
	}
	return client.Sniff(c.BR)
}
