package l7

import (
	"time"

	"github.com/egressd/egressd/l7/internal/client"
	"github.com/egressd/egressd/l7/internal/http1"
	"github.com/egressd/egressd/rules"
)

// newHTTP1 returns the Proxy's HTTP/1.x server (l7/internal/http1), which
// serves redirected connections and the gateway's.
func (p *Proxy) newHTTP1() *http1.Server {
	cfg := &p.cfg
	return http1.New(http1.Config{
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		ResponseTimeout:   cfg.ResponseTimeout,
		ConnectTimeout:    cfg.ConnectTimeout,
		DialOriginal:      cfg.DialMode == DialOriginal,
		MaxIdlePerHost:    cfg.MaxIdlePerHost,
		MaxIdlePerClient:  cfg.MaxIdlePerClient,
		MaxIdleUpstream:   cfg.MaxIdleUpstream,
		UpstreamIdle:      cfg.UpstreamIdle,
		Dialer:            p.dialer,
		OnEgressRetry:     p.metrics.EgressRetries.Inc,
		Host:              http1Host{p},
	})
}

// http1Host is what l7/internal/http1 needs of the Proxy.
type http1Host struct{ p *Proxy }

func (h http1Host) Decide(c *client.Conn, e *client.Entry, host string, port uint16) (rules.Match, bool) {
	return h.p.decideConn(c, e, host, port)
}

func (h http1Host) Finish(e *client.Entry, now time.Time) { h.p.finishAt(e, now) }

func (h http1Host) UpstreamError(err error) (int, string) { return h.p.upstreamError(err) }

func (h http1Host) BeginSplice(c *client.Conn, sp *client.Splice) func() string {
	return h.p.beginSplice(c, sp)
}

func (h http1Host) ServeH2C(c *client.Conn) { h.p.serveH2C(c) }

func (h http1Host) Closing() bool { return h.p.closing.Load() }

func (h http1Host) Go(c *client.Conn, fn func() bool) { go h.p.continueConn(c, fn) }
