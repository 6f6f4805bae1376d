package l7

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	"github.com/egressd/egressd/l7/internal/accesslog"
	"github.com/prometheus/client_golang/prometheus"
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

// metricsCache holds the collectors of one decision, rule and protocol, so
// that the requests of a keep-alive connection, which mostly repeat them,
// skip the label lookups.
type metricsCache struct {
	decision, rule, protocol, namespace string
	requests                            prometheus.Counter
	duration                            prometheus.Observer
}

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
	ns := e.namespace()
	if mc.requests == nil || mc.decision != e.decision || mc.rule != e.rule || mc.protocol != e.protocol || mc.namespace != ns {
		*mc = metricsCache{decision: e.decision, rule: e.rule, protocol: e.protocol, namespace: ns,
			requests: p.metrics.Requests.WithLabelValues(e.decision, e.rule, e.protocol, ns),
			duration: p.metrics.Duration.WithLabelValues(e.decision)}
	}
	mc.requests.Inc()
	mc.duration.Observe(d.Seconds())
	if p.accessBuf != nil { // the same line, encoded without slog (accesslogbuf.go)
		l := accessLine(e, d)
		p.accessBuf.Log(now, &l)
		return
	}
	ctx := context.Background()
	if !p.access.Enabled(ctx, slog.LevelInfo) {
		return
	}
	attrs, n := accessAttrs(e, d)
	p.access.LogAttrs(ctx, slog.LevelInfo, "request", attrs[:n]...)
}

// accessAttrs are the attributes of e's line; only the first n are logged.
// grpc_status, reason, namespace and pod appear only when set.
func accessAttrs(e *accessEntry, d time.Duration) (attrs [16]slog.Attr, n int) {
	attrs = [...]slog.Attr{
		slog.String("client", accesslog.AddrText(e.clientText, e.client)),
		slog.String("orig_dst", accesslog.AddrText(e.origText, e.orig)),
		slog.String("host", e.host),
		slog.Int("port", int(e.port)),
		slog.String("protocol", e.protocol),
		slog.String("upstream", e.upstream),
		slog.String("rule", e.rule),
		slog.String("decision", e.decision),
		slog.Int("status", e.status),
		{}, // grpc_status
		slog.Int64("bytes_in", e.bytesIn),
		slog.Int64("bytes_out", e.bytesOut),
		slog.Duration("duration", d),
		{}, // reason
		{}, // namespace
		{}, // pod
	}
	n = 9
	if e.grpcStatus != "" {
		attrs[n] = slog.String("grpc_status", e.grpcStatus)
		n++
	}
	n += copy(attrs[n:], attrs[10:13])
	if e.reason != "" {
		attrs[n] = slog.String("reason", e.reason)
		n++
	}
	if ns := e.namespace(); ns != "" {
		attrs[n] = slog.String("namespace", ns)
		n++
	}
	if pod := e.pod(); pod != "" {
		attrs[n] = slog.String("pod", pod)
		n++
	}
	return attrs, n
}
