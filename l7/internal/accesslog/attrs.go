package accesslog

import (
	"log/slog"
)

// Attrs are l's attributes for slog, in the order and forms Handler
// encodes them (l7 logs them through any other slog.Handler); only the
// first n are logged: GRPCStatus, Reason, Namespace and Pod appear only
// when set.
func (l *Line) Attrs() (attrs [16]slog.Attr, n int) {
	attrs = [...]slog.Attr{
		slog.String("client", AddrText(l.ClientText, l.Client)),
		slog.String("orig_dst", AddrText(l.OrigText, l.OrigDst)),
		slog.String("host", l.Host),
		slog.Int("port", int(l.Port)),
		slog.String("protocol", l.Protocol),
		slog.String("upstream", l.Upstream),
		slog.String("rule", l.Rule),
		slog.String("decision", l.Decision),
		slog.Int("status", l.Status),
		{}, // grpc_status
		slog.Int64("bytes_in", l.BytesIn),
		slog.Int64("bytes_out", l.BytesOut),
		slog.Duration("duration", l.Duration),
		{}, // reason
		{}, // namespace
		{}, // pod
	}
	n = 9
	if l.GRPCStatus != "" {
		attrs[n] = slog.String("grpc_status", l.GRPCStatus)
		n++
	}
	n += copy(attrs[n:], attrs[10:13])
	if l.Reason != "" {
		attrs[n] = slog.String("reason", l.Reason)
		n++
	}
	if l.Namespace != "" {
		attrs[n] = slog.String("namespace", l.Namespace)
		n++
	}
	if l.Pod != "" {
		attrs[n] = slog.String("pod", l.Pod)
		n++
	}
	return attrs, n
}
