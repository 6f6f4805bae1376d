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
	handedOff := false // to another goroutine, which ends c
	defer func() { p.endConn(c, recover(), handedOff) }()
	if c.Gateway {
		handedOff = p.serveGateway(c)
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
		handedOff = p.h1.Serve(c)
	}
}

// continueConn runs fn, the rest of c's serving that l7/internal/http1
// handed to a new goroutine (an idle connection's wait, on a small stack),
// and ends c as serveConn would.
func (p *Proxy) continueConn(c *client.Conn, fn func() bool) {
	handedOff := false
	defer func() { p.endConn(c, recover(), handedOff) }()
	handedOff = fn()
}

// endConn ends c, unless it was handed to another goroutine: the panic
// that ended it logged (r), its buffers returned, its counts released.
func (p *Proxy) endConn(c *client.Conn, r any, handedOff bool) {
	if r != nil {
		p.log.Error("panic serving connection", "client", c.Client, "orig", c.Orig, "panic", r, "stack", string(debug.Stack()))
	} else if handedOff {
		return
	}
	c.Release()
	p.trackConn(c, false)
	p.limits.Release(c.LimitKey)
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
