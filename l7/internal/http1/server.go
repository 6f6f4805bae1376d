package http1

import (
	"time"

	"github.com/egressd/egressd/l7/internal/client"
	"github.com/egressd/egressd/l7/internal/dialer"
	"github.com/egressd/egressd/l7/internal/pool"
	"github.com/egressd/egressd/rules"
)

// Host is what the HTTP/1.x server needs of the proxy it serves for: the
// decisions, the log and metrics, the register of spliced connections, and
// the h2c server for gateway tunnels that carry h2c.
type Host interface {
	// Decide reports the rule that allows host (an authority: its port
	// is ignored) on port for a request on c; in audit mode a request no
	// rule allows is allowed too, marked in e.
	Decide(c *client.Conn, e *client.Entry, host string, port uint16) (rules.Match, bool)
	// Finish writes e's access-log line and records its metrics; now is
	// the request's end.
	Finish(e *client.Entry, now time.Time)
	// UpstreamError counts an upstream failure and returns the status and
	// reason for the client.
	UpstreamError(err error) (status int, reason string)
	// BeginSplice registers sp as c's splice until the returned end is
	// called, which reports why egressd cut it ("" if it did not).
	BeginSplice(c *client.Conn, sp *client.Splice) (end func() string)
	// ServeH2C serves c, a gateway CONNECT tunnel that carries h2c.
	ServeH2C(c *client.Conn)
	// Closing reports whether Shutdown has begun: responses then say
	// "Connection: close".
	Closing() bool
	// Go runs fn, the rest of c's serving, on a new goroutine, and ends c
	// (as its first goroutine would have) when fn returns false; true: fn
	// handed c on again.
	Go(c *client.Conn, fn func() (handedOff bool))
}

// Config configures a Server; the proxy fills it from its own Config,
// defaults applied.
type Config struct {
	MaxHeaderBytes    int
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	ResponseTimeout   time.Duration
	ConnectTimeout    time.Duration
	// DialOriginal: upstreams are dialed at the original destination IP,
	// which the pool keys then carry.
	DialOriginal bool
	// The idle upstream connections kept (l7/internal/pool): per key,
	// per client, in all, and for how long.
	MaxIdlePerHost, MaxIdlePerClient, MaxIdleUpstream int
	UpstreamIdle                                      time.Duration

	Dialer *dialer.Dialer // upstream dials, the egress proxy, TLS origination
	// OnEgressRetry is called when a request is sent again on a new
	// connection to the egress proxy.
	OnEgressRetry func()
	Host          Host
}

// A Server serves HTTP/1.x client connections. It is safe for concurrent
// use.
type Server struct {
	cfg  Config
	host Host
	pool *pool.Pool[*upConn]
}

// New returns a Server for cfg.
func New(cfg Config) *Server {
	return &Server{cfg: cfg, host: cfg.Host,
		pool: pool.New[*upConn](cfg.MaxIdlePerHost, cfg.MaxIdlePerClient, cfg.MaxIdleUpstream, cfg.UpstreamIdle)}
}

// CloseIdle closes the idle upstream connections (at Shutdown).
func (srv *Server) CloseIdle() { srv.pool.CloseAll() }

// finish is Host.Finish at the current time.
func (srv *Server) finish(e *client.Entry) { srv.host.Finish(e, time.Now()) }

// IdleUpstreams is the number of idle upstream connections kept.
func (srv *Server) IdleUpstreams() int { return srv.pool.Idle() }
