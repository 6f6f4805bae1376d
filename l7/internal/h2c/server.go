package h2c

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// Upstream is what the forwarder needs of the proxy.
type Upstream interface {
	// Dial opens plain TCP to t's upstream (or a tunnel through the egress
	// proxy); TLS is layered here.
	Dial(ctx context.Context, t *Target) (net.Conn, error)
	// TLSConfig is the verified client TLS configuration for serverName.
	TLSConfig(serverName string, alpn []string) *tls.Config
	// Error counts an upstream failure and gives the status and reason
	// for the client.
	Error(err error) (status int, reason string)
}

// Markers are the values of the X-Egressd header on egressd's own answers.
type Markers struct{ Denied, Invalid, Error string }

// Config configures a Server; the proxy fills it from its own Config.
type Config struct {
	MaxHeaderBytes  int
	IdleTimeout     time.Duration // client connections idle; stalls inside a response body
	ResponseTimeout time.Duration // the wait for a response head once the request was sent
	ConnectTimeout  time.Duration // the TLS handshake with the upstream
	UpstreamIdle    time.Duration // idle upstream connections kept
	Log             *slog.Logger  // x/net's server errors, at Debug; not nil
	Upstream        Upstream
	Markers         Markers
}

// Server is what every h2c client connection of a Proxy shares: the
// HTTP/2 server settings and the upstream transports, whose connections
// are shared by all streams of all clients. Built on first use.
type Server struct {
	cfg  Config
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

// New returns a Server for cfg; nothing is built before its first
// connection.
func New(cfg Config) *Server { return &Server{cfg: cfg} }

// UploadBuffer bounds the request body bytes a client connection may
// have sent and the proxy not yet passed upstream: the flow-control windows
// the proxy grants, per connection and per stream. x/net's defaults are
// 1 MiB each: 200 connections pushing bodies nobody reads held 200 MiB.
// 64 KiB is HTTP/2's initial window (x/net takes no less for the
// connection). The client is on the same node, so the window need not
// cover a long round trip: BenchmarkH2CUpload moved 1 MiB bodies at ~300
// MB/s with it against ~640 with 1 MiB (BENCHMARKS.md), for 16× less
// memory per connection. A variable for that benchmark only.
var UploadBuffer = struct{ Conn, Stream int32 }{Conn: 64 << 10, Stream: 64 << 10}

// maxReadFrameSize is the SETTINGS_MAX_FRAME_SIZE the h2c front end
// announces: HTTP/2's default, 16 KiB. x/net announces 1 MiB unless told,
// so a client could send 1 MiB frames (its frame buffer grows to that per
// connection) and a HEADERS frame over 16 KiB was read instead of refused
// with FRAME_SIZE_ERROR (h2spec 4.2/3). Upload windows are 64 KiB
// (UploadBuffer), so larger frames would not carry more per round trip.
const maxReadFrameSize = 16 << 10

// init builds the shared HTTP/2 state on first use.
func (s *Server) init() {
	s.once.Do(func() {
		s.hs = &http.Server{
			MaxHeaderBytes: s.cfg.MaxHeaderBytes,
			IdleTimeout:    s.cfg.IdleTimeout,
			ErrorLog:       slog.NewLogLogger(s.cfg.Log.Handler(), slog.LevelDebug),
			ConnState:      connState,
		}
		s.srv = &http2.Server{IdleTimeout: s.cfg.IdleTimeout,
			MaxUploadBufferPerConnection: UploadBuffer.Conn, MaxUploadBufferPerStream: UploadBuffer.Stream,
			MaxReadFrameSize: maxReadFrameSize}
		// Only to hook srv's graceful shutdown (GOAWAY) to hs.Shutdown;
		// it cannot fail for a Server without TLS cipher suites.
		_ = http2.ConfigureServer(s.hs, s.srv)
		s.tr = s.newH2Transport()
		s.h1tr = s.newH1Transport()
	})
}

// CloseIdle closes the idle upstream HTTP/2 connections (Proxy.Shutdown).
func (s *Server) CloseIdle() {
	if s.tr != nil {
		s.tr.CloseIdleConnections()
		s.h1tr.CloseIdleConnections()
	}
}

// ServeConn serves an h2c connection: nc, read through br, which holds
// the unread client preface (the HTTP/2 server reads it itself); every
// stream goes to h. idle is told when the connection has no open stream
// (true: it may be closed) and when it has some again. It returns once
// the connection is closed and all its streams and its frame reader are
// done.
func (s *Server) ServeConn(nc net.Conn, br io.Reader, h http.Handler, idle func(bool)) {
	s.init()
	g := new(gate)
	hc := &conn{Conn: nc, br: br, idle: idle, gate: g}
	s.srv.ServeConn(hc, &http2.ServeConnOpts{BaseConfig: s.hs, Handler: gatedHandler{g, h}})
	// ServeConn has closed the connection and cancelled the streams, but
	// does not wait for their handlers nor for its frame reader: the
	// caller's connection (and its pooled reader) must outlive them.
	g.close()
}

// GoAway starts the graceful shutdown (GOAWAY, then close once the streams
// are done) of every h2c connection being served. It does not block.
func (s *Server) GoAway() {
	// hs has no listeners nor connections of its own: Shutdown only runs
	// srv's hook (a GOAWAY per connection) and returns at once.
	_ = s.hs.Shutdown(context.Background())
}

// connState tells the connection's owner when an h2c connection has no
// open stream (idle: it may be closed) and when it has some again.
func connState(nc net.Conn, st http.ConnState) {
	hc, ok := nc.(*conn)
	if !ok {
		return
	}
	switch st {
	case http.StateIdle:
		hc.idle(true)
	case http.StateActive:
		hc.idle(false)
	}
}

// conn is the client connection as the HTTP/2 server sees it: reads go
// through the owner's buffered reader, which holds the sniffed preface.
type conn struct {
	net.Conn
	br   io.Reader
	idle func(bool)
	gate *gate
}

func (hc *conn) Read(b []byte) (int, error) {
	if !hc.gate.enter() {
		return 0, net.ErrClosed
	}
	defer hc.gate.exit()
	return hc.br.Read(b)
}

// gate counts the goroutines using a connection (stream handlers, the
// frame reader) so that its owner can wait for them; once closed, it
// admits no one.
type gate struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	return true
}

func (g *gate) exit() { g.wg.Done() }

func (g *gate) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.wg.Wait()
}

// gatedHandler serves a stream only while its connection's gate is open.
type gatedHandler struct {
	g *gate
	h http.Handler
}

func (gh gatedHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !gh.g.enter() {
		return // the connection is over; the stream was already reset
	}
	defer gh.g.exit()
	gh.h.ServeHTTP(w, r)
}
