package l7

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	"github.com/egressd/egressd/l7/internal/accesslog"
	"github.com/egressd/egressd/l7/internal/metrics"
)

// Protocol names in the access log and the "protocol" metric label.
const (
	protoNameHTTP1   = "http/1.1"
	protoNameHTTP10  = "http/1.0"
	protoNameH2C     = "h2c"
	protoNameGRPC    = "grpc"
	protoNameTLSPass = "tls-passthrough"
)

// accessEntry is one request's access-log record and metrics observation.
// Every protocol handler fills one per request (or stream) and passes it to
// p.finish.
type accessEntry struct {
	start    time.Time
	client   netip.AddrPort
	orig     netip.AddrPort
	host     string // effective authority as requested ("" when unknown)
	port     uint16 // original destination port, matched against the rules
	protocol string // protoName*
	upstream string // allowed requests: "http", "https" (TLS originated), "tls" (TLS passthrough), "tunnel" (gateway CONNECT, spliced) or "requests" (gateway CONNECT whose requests are decided one by one)
	rule     string // matching rule name; "" when none
	decision string // decision*
	status   int    // status sent to the client (0: none, connection dropped)
	// grpcStatus is the grpc-status the client got (gRPC only; "" when
	// none came: the stream was reset or is not gRPC).
	grpcStatus string
	bytesIn    int64  // request body bytes from the client
	bytesOut   int64  // response body bytes to the client
	reason     string // why a request was refused or failed ("" for success)
	wouldDeny  bool   // audit mode: no rule allows it, forwarded (audit.go)
	// scope: the connection's (Config.Scopes); nil: the global rules
	// (gateway requests).
	scope *Scope

	// Optional text forms of client and orig, cached per connection by
	// handlers that log many requests on one ("": formatted here).
	clientText, origText string
	// Optional per-connection cache of the metrics of the previous request
	// (nil: looked up every time).
	mc *metricsCache
}

// metricsCache holds the collectors of a connection's previous request
// (l7/internal/metrics).
type metricsCache = metrics.RequestCache

// namespace is the name of e's scope ("": the global rules).
func (e *accessEntry) namespace() string {
	if e.scope == nil {
		return ""
	}
	return e.scope.Namespace
}

// pod is the pod of e's scope ("": none).
func (e *accessEntry) pod() string {
	if e.scope == nil {
		return ""
	}
	return e.scope.Pod
}

// finish writes e's access-log line and records its metrics.
func (p *Proxy) finish(e *accessEntry) { p.finishAt(e, time.Now()) }

// finishAt is finish with the current time known.
func (p *Proxy) finishAt(e *accessEntry, now time.Time) {
	d := now.Sub(e.start)
	if e.wouldDeny {
		markWouldDeny(e)
	}
	mc := e.mc
	if mc == nil {
		mc = new(metricsCache)
	}
	p.metrics.ObserveRequest(mc, e.decision, e.rule, e.protocol, e.namespace(), d)
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
func accessLine(e *accessEntry, d time.Duration) accesslog.Line {
	return accesslog.Line{
		Client: e.client, OrigDst: e.orig, ClientText: e.clientText, OrigText: e.origText,
		Host: e.host, Port: e.port, Protocol: e.protocol, Upstream: e.upstream,
		Rule: e.rule, Decision: e.decision, Status: e.status, GRPCStatus: e.grpcStatus,
		BytesIn: e.bytesIn, BytesOut: e.bytesOut, Duration: d, Reason: e.reason,
		Namespace: e.namespace(), Pod: e.pod(),
	}
}
