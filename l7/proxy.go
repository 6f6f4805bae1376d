package l7

import (
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/egressd/egressd/l7/internal/dialer"
	"github.com/egressd/egressd/l7/internal/h2c"
	"github.com/egressd/egressd/l7/internal/limit"
	"github.com/egressd/egressd/l7/internal/pool"
	"github.com/egressd/egressd/rules"
)

// ErrProxyClosed is returned by Serve after Shutdown.
var ErrProxyClosed = errors.New("l7: proxy closed")

// OriginalDst recovers where an accepted connection was originally going.
type OriginalDst interface {
	// Lookup is given the accepted connection's remote (client) and local
	// addresses as the proxy sees them. ok=false: not redirected by us → close.
	Lookup(client, local netip.AddrPort) (orig netip.AddrPort, ok bool)
}

// OriginalDstCgroup is an OriginalDst that also tells the cgroup of the
// process that connected. Host processes all connect from loopback; with
// it, MaxConnsPerClient counts their connections per cgroup (a
// hostNetwork pod each) instead of all of them together.
type OriginalDstCgroup interface {
	OriginalDst
	LookupCgroup(client, local netip.AddrPort) (orig netip.AddrPort, cgroupID uint64, ok bool)
}

// lookup asks Config.OriginalDst where c was going (and its cgroup, when
// known: 0 otherwise).
func (p *Proxy) lookup(c *clientConn) (netip.AddrPort, uint64, bool) {
	if oc, ok := p.cfg.OriginalDst.(OriginalDstCgroup); ok {
		return oc.LookupCgroup(c.client, c.local)
	}
	orig, ok := p.cfg.OriginalDst.Lookup(c.client, c.local)
	return orig, 0, ok
}

// Scope is whose rules decide the requests of a connection: a Kubernetes
// namespace's (on top of the global ones), a cgroup's given its own rule
// files, or the global ones (Config.Rules).
type Scope struct {
	// Rules decide the connection's requests, read again for each
	// request; nil: Config.Rules.
	Rules interface{ Current() *rules.Set }
	// Namespace names the scope in the access log (namespace=) and in the
	// metrics' namespace label; "": the global rules. It must come from a
	// bounded set (namespaces, configured cgroups), not from the client.
	Namespace string
	// Pod is the pod's name in the access log (pod=); "": none.
	Pod string
}

// Scoper chooses the Scope of each connection, once, right after its
// original destination was found, by the cgroup of the process that
// connected (0 when the OriginalDst does not tell it). It may block
// briefly (a pod the agent has not heard of yet); it must not fail: a
// connection it cannot place gets the global rules (a Scope with nil
// Rules), and it says so in its own log.
type Scoper interface {
	Scope(cgroupID uint64) Scope
}

// DialMode chooses the address an allowed request is sent to.
type DialMode int

const (
	// DialResolve resolves the matched host with Config.Resolver and dials
	// that: a forged Host cannot reach an address of the app's choosing.
	DialResolve DialMode = iota
	// DialOriginal dials the original destination IP the app connected to.
	DialOriginal
)

// ParseDialMode parses the --dial flag value: "resolve" or "original".
func ParseDialMode(s string) (DialMode, error) {
	switch s {
	case "resolve", "":
		return DialResolve, nil
	case "original":
		return DialOriginal, nil
	}
	return 0, fmt.Errorf("dial mode %q: want resolve or original", s)
}

func (m DialMode) String() string {
	if m == DialOriginal {
		return "original"
	}
	return "resolve"
}

// Defaults of the Config limits and timeouts (used where the field is zero).
const (
	DefaultMaxHeaderBytes    = 32 << 10
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultConnectTimeout    = 5 * time.Second
	DefaultResponseTimeout   = 60 * time.Second
	DefaultMaxIdlePerHost    = 64
	DefaultUpstreamIdle      = 30 * time.Second
	DefaultMaxConns          = 16384
	DefaultMaxConnsPerClient = 1024
	DefaultMaxIdleUpstream   = 1024
	DefaultMaxIdlePerClient  = 128
)

// Config configures a Proxy. Rules and OriginalDst are required; every other
// field has a documented default for its zero value.
type Config struct {
	Rules interface{ Current() *rules.Set } // required; a nil *Set denies everything
	// Audit forwards the requests the rules would deny (audit.go), logged
	// and counted as decision would-deny; false: enforce.
	Audit bool
	// Scopes, if not nil, gives each connection the rules of its scope
	// (its pod's namespace, its cgroup); nil: Rules decide everything.
	// Gateway connections always use Rules.
	Scopes      Scoper
	OriginalDst OriginalDst   // required by Serve; ServeGateway (gateway.go) does not use it
	DialMode    DialMode      // zero: DialResolve
	Resolver    *net.Resolver // nil: net.DefaultResolver; without a Dial of its own it is made to mark its sockets
	Mark        uint32        // SO_MARK on every upstream socket; 0: none
	// Control runs on every socket the proxy connects itself (upstream,
	// egress proxy, the resolver's unless it has its own Dial) before
	// connect, after Mark; an error fails the dial. egressd's agent
	// registers its own sockets with the BPF programs here. nil: none.
	Control func(network, address string, c syscall.RawConn) error
	// Dial opens upstream TCP connections. nil: a net.Dialer with Resolver,
	// Mark and ConnectTimeout whose ControlContext applies the upstream
	// address policy (l7/internal/dialer) before each connect. It receives
	// "host.:port" (an absolute name) or "ip:port". A Dial of the
	// embedder's is checked after it connects: a refused address is closed
	// before a byte is sent.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// AllowUpstream lists the ranges the upstream address policy lets
	// through although they are loopback, link-local, multicast,
	// unspecified or the node's own (--allow-upstream).
	AllowUpstream []netip.Prefix
	RootCAs       *x509.CertPool // trusted for TLS origination in addition to the system roots; nil: system roots only
	EgressProxy   *url.URL       // for rules with useEgressProxy; nil: such requests fail with 502, never go direct
	Logger        *slog.Logger   // errors, and the access log unless AccessLog is set; nil: discard
	// AccessLog receives one Info record per request ("request"); nil: Logger.
	// A logger whose handler is disabled at Info (slog.DiscardHandler) turns
	// the access log off at no cost; an *AccessLog handler (NewAccessLog)
	// encodes lines without slog and saves the write(2) per request.
	AccessLog *slog.Logger
	Metrics   prometheus.Registerer // nil: metrics are kept but not registered

	MaxHeaderBytes    int           // request/response head size limit (431 / 502); 0: DefaultMaxHeaderBytes
	ReadHeaderTimeout time.Duration // time to read a request head once it started (slowloris); 0: DefaultReadHeaderTimeout
	IdleTimeout       time.Duration // keep-alive wait for the next request, and longest stall inside a request or response body (long polls, SSE); 0: DefaultIdleTimeout
	ConnectTimeout    time.Duration // upstream TCP connect plus TLS handshake; 0: DefaultConnectTimeout
	ResponseTimeout   time.Duration // wait for the upstream response head after the request (body included) was sent; not gRPC (grpc-timeout); 0: DefaultResponseTimeout
	MaxIdlePerHost    int           // idle upstream connections kept per (protocol, host, port, target); 0: DefaultMaxIdlePerHost
	UpstreamIdle      time.Duration // how long an idle upstream connection is kept; 0: DefaultUpstreamIdle
	// MaxConns and MaxConnsPerClient bound the client connections open at
	// once, in all and from one client (source address); a connection over
	// either is shed at accept (limit.go). 0: the default; negative: none.
	MaxConns          int // 0: DefaultMaxConns
	MaxConnsPerClient int // 0: DefaultMaxConnsPerClient
	// MaxStreamsPerClient bounds the h2c streams open at once from one
	// client, over all its connections (streamlimit.go); one more is
	// answered 503. 0: DefaultMaxStreamsPerClient; negative: none.
	MaxStreamsPerClient int
	MaxIdleUpstream     int // idle upstream HTTP/1.x connections kept in all; 0: DefaultMaxIdleUpstream
	// MaxIdlePerClient bounds the idle upstream HTTP/1.x connections that the
	// requests of one client address may leave pooled (so one client naming
	// thousands of hosts makes egressd hold at most this many sockets for
	// it); 0: DefaultMaxIdlePerClient. Over a bound the oldest is closed.
	MaxIdlePerClient int
	// MaxSpliceLifetime closes a spliced connection (TLS passthrough,
	// gateway CONNECT tunnel carrying TLS, 101 upgrade) this long after its
	// splice began (redecide.go); 0: never. A rule's removal ends what it
	// allowed anyway (Redecide); this bounds how long a decision, and the
	// DNS answer it dialled, may be used.
	MaxSpliceLifetime time.Duration
}

// Proxy is the L7 egress proxy. It is safe for concurrent use.
type Proxy struct {
	cfg       Config
	log       *slog.Logger
	access    *slog.Logger // access log: Config.AccessLog, else log
	accessBuf *AccessLog   // access's handler when it is one: finish encodes lines itself; nil: via slog
	metrics   *metrics
	pool      *pool.Pool[*upConn]
	limits    *limit.Limiter // limit.go: admission at accept
	dialer    *dialer.Dialer // l7/internal/dialer: upstream dials, the address policy, TLS origination
	egress    *egressProxy   // the dialer's egress proxy (egressproxy.go); nil: none
	h2        *h2c.Server    // l7/internal/h2c: HTTP/2 server and transports shared by h2c connections

	closing  atomic.Bool
	mu       sync.Mutex
	lns      map[*net.Listener]struct{}
	conns    map[*clientConn]struct{}
	connsWG  sync.WaitGroup
	shutdown chan struct{} // closed by Shutdown
}

// New checks cfg, fills in defaults and registers the metrics.
func New(cfg Config) (*Proxy, error) {
	if cfg.Rules == nil {
		return nil, errors.New("l7: config: Rules is required")
	}
	if cfg.DialMode != DialResolve && cfg.DialMode != DialOriginal {
		return nil, fmt.Errorf("l7: config: unknown DialMode %d", cfg.DialMode)
	}
	setDefault(&cfg.MaxHeaderBytes, DefaultMaxHeaderBytes)
	setDefault(&cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	setDefault(&cfg.IdleTimeout, DefaultIdleTimeout)
	setDefault(&cfg.ConnectTimeout, DefaultConnectTimeout)
	setDefault(&cfg.ResponseTimeout, DefaultResponseTimeout)
	setDefault(&cfg.MaxIdlePerHost, DefaultMaxIdlePerHost)
	setDefault(&cfg.UpstreamIdle, DefaultUpstreamIdle)
	setDefault(&cfg.MaxConns, DefaultMaxConns)
	setDefault(&cfg.MaxConnsPerClient, DefaultMaxConnsPerClient)
	setDefault(&cfg.MaxStreamsPerClient, DefaultMaxStreamsPerClient)
	setDefault(&cfg.MaxIdleUpstream, DefaultMaxIdleUpstream)
	setDefault(&cfg.MaxIdlePerClient, DefaultMaxIdlePerClient)
	control := ChainControl(MarkControl(cfg.Mark), cfg.Control)
	var m *metrics // set below, before the first dial
	d, err := dialer.New(dialer.Config{Original: cfg.DialMode == DialOriginal, Resolver: cfg.Resolver,
		Control: control, Dial: cfg.Dial, Allow: cfg.AllowUpstream, ConnectTimeout: cfg.ConnectTimeout,
		RootCAs: cfg.RootCAs, EgressProxy: cfg.EgressProxy, OnEgressRetry: func() { m.egressRetries.Inc() },
		Log: cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))})
	if err != nil {
		return nil, err
	}
	cfg.Resolver = d.Resolver()
	p := &Proxy{
		cfg:      cfg,
		log:      cfg.Logger,
		lns:      make(map[*net.Listener]struct{}),
		conns:    make(map[*clientConn]struct{}),
		shutdown: make(chan struct{}),
		dialer:   d,
		egress:   d.EgressProxy(),
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.access = cmp.Or(cfg.AccessLog, p.log)
	p.accessBuf, _ = p.access.Handler().(*AccessLog)
	p.pool = pool.New[*upConn](cfg.MaxIdlePerHost, cfg.MaxIdlePerClient, cfg.MaxIdleUpstream, cfg.UpstreamIdle)
	p.limits = limit.New(cfg.MaxConns, cfg.MaxConnsPerClient, cfg.MaxStreamsPerClient, p.log)
	m, err = newMetrics(cfg.Metrics, p.limits, cfg.Audit)
	if err != nil {
		return nil, err
	}
	p.metrics = m
	p.h2 = p.newH2C()
	return p, nil
}

// ChainControl runs the non-nil Control functions in order; nil if none.
func ChainControl(fs ...func(network, address string, c syscall.RawConn) error) func(network, address string, c syscall.RawConn) error {
	var set []func(network, address string, c syscall.RawConn) error
	for _, f := range fs {
		if f != nil {
			set = append(set, f)
		}
	}
	switch len(set) {
	case 0:
		return nil
	case 1:
		return set[0]
	}
	return func(network, address string, c syscall.RawConn) error {
		for _, f := range set {
			if err := f(network, address, c); err != nil {
				return err
			}
		}
		return nil
	}
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Serve accepts connections on ln until Shutdown (then it returns
// ErrProxyClosed) or until ln fails. It may be called for several listeners.
func (p *Proxy) Serve(ln net.Listener) error {
	if p.cfg.OriginalDst == nil {
		return errors.New("l7: Serve: Config.OriginalDst is required")
	}
	return p.serve(ln, false)
}

// serve is the accept loop of Serve and ServeGateway (gateway.go). A
// connection Accept returned is served even when Shutdown has begun: with a
// listening socket shared with a successor (see Shutdown), closing it would
// drop a connect the kernel already completed.
func (p *Proxy) serve(ln net.Listener, gateway bool) error {
	if !p.trackListener(&ln, true) {
		return ErrProxyClosed
	}
	defer p.trackListener(&ln, false)
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if p.closing.Load() {
				return ErrProxyClosed
			}
			if temporaryAcceptError(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				p.log.Warn("accept", "err", err, "retry_in", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("l7: accept: %w", err)
		}
		backoff = 0
		c := newClientConn(nc)
		c.gateway = gateway
		if !p.admit(c) {
			continue
		}
		p.trackConn(c, true)
		go p.serveConn(c)
	}
}

// trackListener registers a running accept loop (add) or its end. An
// accept loop counts in connsWG like a connection, so that the connections
// it still accepts during Shutdown are waited for.
func (p *Proxy) trackListener(ln *net.Listener, add bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		if p.closing.Load() {
			return false
		}
		p.lns[ln] = struct{}{}
		p.connsWG.Add(1)
	} else {
		delete(p.lns, ln)
		p.connsWG.Done()
	}
	return true
}

// trackConn registers an accepted connection (add) or its end. Called by
// a registered accept loop, so connsWG is above zero when it adds.
func (p *Proxy) trackConn(c *clientConn, add bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		p.conns[c] = struct{}{}
		p.connsWG.Add(1)
		p.metrics.openConns.Inc()
	} else {
		delete(p.conns, c)
		p.connsWG.Done()
		p.metrics.openConns.Dec()
	}
}

// idleGrace is how long Shutdown leaves idle client connections open
// before closing them. Meanwhile a client sending requests back to back
// gets "Connection: close" on its next response (or GOAWAY on h2c) and
// moves to a new connection without a failed request, and a connection
// accepted just before the listener closed receives its first request:
// closing an idle keep-alive connection races the client's next request,
// which a client may not retry.
const idleGrace = 500 * time.Millisecond

// Shutdown stops accepting, waits for the requests in flight to finish,
// closes idle client connections (those still idle after idleGrace) and
// the idle upstream connections. When ctx ends first, the remaining
// connections are closed, client and upstream sides (a request waiting for
// its response head does not hold Shutdown up to ResponseTimeout; a dial
// under way still takes up to ConnectTimeout), and ctx's error is returned.
//
// Shutdown closes the listeners: a listening socket shared with another
// process (a successor agent that was handed it) keeps listening there,
// with the connections queued in its backlog; a connection this Proxy
// accepted before the close is served to its end.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	if !p.closing.Swap(true) {
		close(p.shutdown)
	}
	for ln := range p.lns {
		(*ln).Close()
	}
	p.mu.Unlock()

	done := make(chan struct{})
	go func() { p.connsWG.Wait(); close(done) }()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	defer p.pool.CloseAll()
	defer p.h2.CloseIdle()
	closeIdleFrom := time.Now().Add(idleGrace)
	for {
		p.closeIdleConns(false, !time.Now().Before(closeIdleFrom))
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			p.closeIdleConns(true, true)
			<-done
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// closeIdleConns closes every connection (all) or asks each to end:
// h2c ones get GOAWAY, idle HTTP/1.x ones are closed when idle is true.
func (p *Proxy) closeIdleConns(all, idle bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		if all {
			c.forceClose()
		} else {
			c.closeIfIdle(idle)
		}
	}
}
