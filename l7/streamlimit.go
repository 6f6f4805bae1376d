package l7

// The h2c stream limit: one client may hold MaxStreamsPerClient h2c streams
// open at once, over all its connections. The connection limits alone do
// not bound what a client costs: each connection may carry the HTTP/2
// server's 250 concurrent streams, and a stream being forwarded holds two
// goroutines, its upstream stream and buffers (about 35 KiB of heap while
// its request body is unfinished), so 60 connections of one pod with 250
// unfinished uploads each would take a 512 MiB agent past its memory limit
// while the connection limits let it open 1024. Memory pressure does not
// help there either: it sheds new connections, and these streams come on
// open ones. A stream over the limit (under memory pressure: from a client
// holding l7/internal/limit.PressureStreamAllowance or more) is answered at once with 503
// (gRPC: UNAVAILABLE), never forwarded, and counted in
// egressd_streams_refused_total{reason}.

import (
	"net/http"

	"github.com/egressd/egressd/l7/internal/client"
)

// DefaultMaxStreamsPerClient bounds the h2c streams open at once from one
// client (Config.MaxStreamsPerClient).
const DefaultMaxStreamsPerClient = 1024

// admitH2Stream admits a stream of c, or answers it 503 and returns false.
func (p *Proxy) admitH2Stream(w http.ResponseWriter, c *client.Conn, e *client.Entry, grpc bool) bool {
	reason := p.limits.AdmitStream(c.LimitKey, e.Start)
	if reason == "" {
		return true
	}
	p.metrics.StreamsRefused.With(reason).Inc()
	e.Reason = "too many streams open from this client (" + reason + ")"
	p.writeLocalH2(w, e, grpc, http.StatusServiceUnavailable, e.Reason)
	return false
}
