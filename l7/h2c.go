package l7

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// h2cProxy is what every h2c client connection of a Proxy shares: the
// HTTP/2 server settings and the upstream transport, whose connections are
// shared by all streams of all clients. Its zero value is ready for use.
type h2cProxy struct {
	once sync.Once
	// hs is the base configuration of srv (limits, error log, the ConnState
	// hook) and its graceful-shutdown plumbing; it never serves itself.
	hs  *http.Server
	srv *http2.Server
	tr  *http2.Transport
	// h1tr carries the streams of HTTPS upstreams that chose ALPN
	// http/1.1 as HTTP/1.1 (not gRPC); h1Only holds their pool keys, each
	// with the time until which it is not asked for h2 again.
	h1tr   *http.Transport
	h1Only sync.Map
}

// h2cUploadBuffer bounds the request body bytes a client connection may
// have sent and the proxy not yet passed upstream: the flow-control windows
// the proxy grants, per connection and per stream. x/net's defaults are
// 1 MiB each: 200 connections pushing bodies nobody reads held 200 MiB.
// 64 KiB is HTTP/2's initial window (x/net takes no less for the
// connection). The client is on the same node, so the window need not
// cover a long round trip: BenchmarkH2CUpload moved 1 MiB bodies at ~300
// MB/s with it against ~640 with 1 MiB (BENCHMARKS.md), for 16× less
// memory per connection. A variable for that benchmark only.
var h2cUploadBuffer = struct{ conn, stream int32 }{conn: 64 << 10, stream: 64 << 10}

// h2cMaxReadFrameSize is the SETTINGS_MAX_FRAME_SIZE the h2c front end
// announces: HTTP/2's default, 16 KiB. x/net announces 1 MiB unless told,
// so a client could send 1 MiB frames (its frame buffer grows to that per
// connection) and a HEADERS frame over 16 KiB was read instead of refused
// with FRAME_SIZE_ERROR (h2spec 4.2/3). Upload windows are 64 KiB
// (h2cUploadBuffer), so larger frames would not carry more per round trip.
const h2cMaxReadFrameSize = 16 << 10

// h2c returns the Proxy's shared HTTP/2 state, building it on first use.
func (p *Proxy) h2c() *h2cProxy {
	h := &p.h2
	h.once.Do(func() {
		h.hs = &http.Server{
			MaxHeaderBytes: p.cfg.MaxHeaderBytes,
			IdleTimeout:    p.cfg.IdleTimeout,
			ErrorLog:       slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
			ConnState:      h2cConnState,
		}
		h.srv = &http2.Server{IdleTimeout: p.cfg.IdleTimeout,
			MaxUploadBufferPerConnection: h2cUploadBuffer.conn, MaxUploadBufferPerStream: h2cUploadBuffer.stream,
			MaxReadFrameSize: h2cMaxReadFrameSize}
		// Only to hook srv's graceful shutdown (GOAWAY) to hs.Shutdown;
		// it cannot fail for a Server without TLS cipher suites.
		_ = http2.ConfigureServer(h.hs, h.srv)
		h.tr = p.newH2Transport()
		h.h1tr = p.newH1Transport()
	})
	return h
}

// closeIdle closes the idle upstream HTTP/2 connections (Proxy.Shutdown).
func (h *h2cProxy) closeIdle() {
	if h.tr != nil {
		h.tr.CloseIdleConnections()
		h.h1tr.CloseIdleConnections()
	}
}

// serveH2C serves an HTTP/2 prior-knowledge (h2c) connection, including
// gRPC: every stream is decided on its own :authority and the original port.
// c.br holds the unread client preface, which the HTTP/2 server reads itself.
// It returns once the connection is closed and all its streams are done.
func (p *Proxy) serveH2C(c *clientConn) {
	h := p.h2c()
	streams := &h2cStreams{p: p, c: c}
	hc := &h2cConn{Conn: c.nc, br: c.br, c: c, gate: &streams.gate}
	p.mu.Lock() // Shutdown reads onShutdown under p.mu
	c.onShutdown = h.goAway
	p.mu.Unlock()
	h.srv.ServeConn(hc, &http2.ServeConnOpts{BaseConfig: h.hs, Handler: streams})
	// ServeConn has closed the connection and cancelled the streams, but
	// does not wait for their handlers nor for its frame reader: c (and its
	// pooled reader) must outlive them.
	streams.gate.close()
}

// goAway starts the graceful shutdown (GOAWAY, then close once the streams
// are done) of every h2c connection being served. It does not block.
func (h *h2cProxy) goAway() {
	// hs has no listeners nor connections of its own: Shutdown only runs
	// srv's hook (a GOAWAY per connection) and returns at once.
	_ = h.hs.Shutdown(context.Background())
}

// h2cConnState tells Proxy.Shutdown when an h2c connection has no open
// stream (idle: it may be closed) and when it has some again.
func h2cConnState(nc net.Conn, st http.ConnState) {
	hc, ok := nc.(*h2cConn)
	if !ok {
		return
	}
	switch st {
	case http.StateIdle:
		hc.c.setIdle()
	case http.StateActive:
		hc.c.setActive()
	}
}

// h2cConn is the client connection as the HTTP/2 server sees it: reads go
// through the clientConn's buffered reader, which holds the sniffed preface.
type h2cConn struct {
	net.Conn
	br   *bufio.Reader
	c    *clientConn
	gate *streamGate
}

func (hc *h2cConn) Read(b []byte) (int, error) {
	if !hc.gate.enter() {
		return 0, net.ErrClosed
	}
	defer hc.gate.exit()
	return hc.br.Read(b)
}

// streamGate counts the goroutines using a connection (stream handlers,
// the frame reader) so that its owner can wait for them; once closed, it
// admits no one.
type streamGate struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

func (g *streamGate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	return true
}

func (g *streamGate) exit() { g.wg.Done() }

func (g *streamGate) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.wg.Wait()
}

// h2cStreams is the http.Handler for the streams of one h2c connection.
type h2cStreams struct {
	p    *Proxy
	c    *clientConn
	gate streamGate
}

func (s *h2cStreams) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.gate.enter() {
		return // the connection is over; the stream was already reset
	}
	defer s.gate.exit()
	p, c := s.p, s.c
	e := accessEntry{
		start:    time.Now(),
		client:   c.client,
		orig:     c.orig,
		origText: c.origText,
		host:     r.Host,
		port:     c.orig.Port(),
		protocol: protoNameH2C,
		decision: decisionInvalid,
		scope:    &c.scope,
	}
	defer p.finish(&e)
	grpc := isGRPC(r.Header)
	if grpc {
		e.protocol = protoNameGRPC
	}
	if !p.admitH2Stream(w, c, &e, grpc) {
		return
	}
	defer p.limits.ReleaseStream(c.limitKey)
	if r.Host == "" || r.Method == http.MethodConnect {
		e.reason = "no :authority, or CONNECT"
		writeLocalH2(w, &e, grpc, http.StatusBadRequest, e.reason)
		return
	}
	m, ok := p.decideConn(c, &e, r.Host, e.port)
	if !ok {
		e.decision = decisionDeny
		e.reason = "no egress rule allows the host and port"
		writeLocalH2(w, &e, grpc, http.StatusForbidden,
			"no egress rule allows "+hostOnly(r.Host)+" on port "+strconv.Itoa(int(e.port)))
		return
	}
	e.decision = decisionAllow
	e.rule = m.Rule.Name
	p.forwardH2(w, r, m, grpc, &e)
}
