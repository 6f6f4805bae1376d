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
// holding pressureStreamAllowance or more) is answered at once with 503
// (gRPC: UNAVAILABLE), never forwarded, and counted in
// egressd_streams_refused_total{reason}.

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultMaxStreamsPerClient bounds the h2c streams open at once from one
// client (Config.MaxStreamsPerClient).
const DefaultMaxStreamsPerClient = 1024

// pressureStreamAllowance: under memory pressure, a client with fewer open
// streams than this may still open one.
const pressureStreamAllowance int32 = 64

// Reasons a stream is refused (egressd_streams_refused_total's label).
const (
	refusedStreamsPerClient = "max_streams_per_client"
	refusedStreamsMemory    = "memory"
)

func newStreamsRefused() *prometheus.CounterVec {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "egressd_streams_refused_total",
		Help: "h2c streams answered 503 (gRPC: UNAVAILABLE) without being forwarded, by reason (max_streams_per_client, memory).",
	}, []string{"reason"})
	v.WithLabelValues(refusedStreamsPerClient)
	v.WithLabelValues(refusedStreamsMemory)
	return v
}

// admitStream counts a new stream of client, or says why it is refused
// ("" when admitted). The zero key is not counted. An admitted stream is
// released with releaseStream.
func (l *limiter) admitStream(client clientKey, now time.Time) string {
	if client == (clientKey{}) {
		return ""
	}
	pressure := l.memoryOver(now)
	l.mu.Lock()
	defer l.mu.Unlock()
	return countUp(l.streams, client, l.perClientStreams, pressure, pressureStreamAllowance, refusedStreamsPerClient, refusedStreamsMemory)
}

func (l *limiter) releaseStream(client clientKey) {
	if client == (clientKey{}) {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	countDown(l.streams, client)
}

// admitH2Stream admits a stream of c, or answers it 503 and returns false.
func (p *Proxy) admitH2Stream(w http.ResponseWriter, c *clientConn, e *accessEntry, grpc bool) bool {
	reason := p.limits.admitStream(c.limitKey, e.start)
	if reason == "" {
		return true
	}
	p.metrics.streamsRefused.WithLabelValues(reason).Inc()
	e.reason = "too many streams open from this client (" + reason + ")"
	writeLocalH2(w, e, grpc, http.StatusServiceUnavailable, e.reason)
	return false
}
