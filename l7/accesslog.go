package l7

import (
	"context"
	"log/slog"
	"time"

	"github.com/egressd/egressd/l7/internal/accesslog"
	"github.com/egressd/egressd/l7/internal/client"
	"github.com/egressd/egressd/l7/internal/metrics"
)

// finish writes e's access-log line and records its metrics.
func (p *Proxy) finish(e *client.Entry) { p.finishAt(e, time.Now()) }

// finishAt is finish with the current time known.
func (p *Proxy) finishAt(e *client.Entry, now time.Time) {
	d := now.Sub(e.Start)
	if e.WouldDeny {
		markWouldDeny(e)
	}
	mc := e.Metrics
	if mc == nil {
		mc = new(metrics.RequestCache)
	}
	p.metrics.ObserveRequest(mc, e.Decision, e.Rule, e.Protocol, e.Namespace(), d)
	if p.accessBuf != nil { // the same line, encoded without slog (l7/internal/accesslog)
		l := accessLine(e, d)
		p.accessBuf.Log(now, &l)
		return
	}
	ctx := context.Background()
	if !p.access.Enabled(ctx, slog.LevelInfo) {
		return
	}
	l := accessLine(e, d)
	attrs, n := l.Attrs() // the same keys and order as the encoder's
	p.access.LogAttrs(ctx, slog.LevelInfo, "request", attrs[:n]...)
}

// accessLine is e's line for the batched handler.
func accessLine(e *client.Entry, d time.Duration) accesslog.Line {
	return accesslog.Line{
		Client: e.Client, OrigDst: e.Orig, ClientText: e.ClientText, OrigText: e.OrigText,
		Host: e.Host, Port: e.Port, Protocol: e.Protocol, Upstream: e.Upstream,
		Rule: e.Rule, Decision: e.Decision, Status: e.Status, GRPCStatus: e.GRPCStatus,
		BytesIn: e.BytesIn, BytesOut: e.BytesOut, Duration: d, Reason: e.Reason,
		Namespace: e.Namespace(), Pod: e.Pod(),
	}
}
