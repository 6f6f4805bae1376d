package l7

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/egressd/egressd/l7/internal/client"
	"github.com/egressd/egressd/l7/internal/dialer"
	"github.com/egressd/egressd/l7/internal/h2c"
	"github.com/egressd/egressd/l7/internal/http1"
	"github.com/egressd/egressd/l7/internal/limit"
	"github.com/egressd/egressd/l7/internal/metrics"
)

// ErrProxyClosed is returned by Serve after Shutdown.
var ErrProxyClosed = errors.New("l7: proxy closed")

// lookup asks Config.OriginalDst where c was going (and its cgroup, when
// known: 0 otherwise).
func (p *Proxy) lookup(c *client.Conn) (netip.AddrPort, uint64, bool) {
	if oc, ok := p.cfg.OriginalDst.(OriginalDstCgroup); ok {
		return oc.LookupCgroup(c.Client, c.Local)
	}
	orig, ok := p.cfg.OriginalDst.Lookup(c.Client, c.Local)
	return orig, 0, ok
}

// Proxy is the L7 egress proxy. It is safe for concurrent use.
type Proxy struct {
	cfg       Config
	log       *slog.Logger
	access    *slog.Logger // access log: Config.AccessLog, else log
	accessBuf *AccessLog   // access's handler when it is one: finish encodes lines itself; nil: via slog
	metrics   *metrics.Set
	h1        *http1.Server       // l7/internal/http1: HTTP/1.x connections and their upstream pool (http1.go builds it)
	limits    *limit.Limiter      // limit.go: admission at accept
	dialer    *dialer.Dialer      // l7/internal/dialer: upstream dials, the address policy, TLS origination
	egress    *dialer.EgressProxy // the dialer's egress proxy (egressproxy.go); nil: none
	h2        *h2c.Server         // l7/internal/h2c: HTTP/2 server and transports shared by h2c connections

	closing  atomic.Bool
	mu       sync.Mutex
	lns      map[*net.Listener]struct{}
	conns    map[*client.Conn]struct{}
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
	var m *metrics.Set // set below, before the first dial
	d, err := dialer.New(dialer.Config{Original: cfg.DialMode == DialOriginal, Resolver: cfg.Resolver,
		Control: control, Dial: cfg.Dial, Allow: cfg.AllowUpstream, ConnectTimeout: cfg.ConnectTimeout,
		RootCAs: cfg.RootCAs, EgressProxy: cfg.EgressProxy, OnEgressRetry: func() { m.EgressRetries.Inc() },
		Log: cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))})
	if err != nil {
		return nil, err
	}
	cfg.Resolver = d.Resolver()
	p := &Proxy{
		cfg:      cfg,
		log:      cfg.Logger,
		lns:      make(map[*net.Listener]struct{}),
		conns:    make(map[*client.Conn]struct{}),
		shutdown: make(chan struct{}),
		dialer:   d,
		egress:   d.EgressProxy(),
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.access = cmp.Or(cfg.AccessLog, p.log)
	p.accessBuf, _ = p.access.Handler().(*AccessLog)
	p.limits = limit.New(cfg.MaxConns, cfg.MaxConnsPerClient, cfg.MaxStreamsPerClient, p.log)
	m, err = newMetrics(cfg.Metrics, p.limits, cfg.Audit)
	if err != nil {
		return nil, err
	}
	p.metrics = m
	p.h2 = p.newH2C()
	p.h1 = p.newHTTP1()
	return p, nil
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
		c := client.New(nc)
		c.Gateway = gateway
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
func (p *Proxy) trackConn(c *client.Conn, add bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		p.conns[c] = struct{}{}
		p.connsWG.Add(1)
		p.metrics.OpenConns.Inc()
	} else {
		delete(p.conns, c)
		p.connsWG.Done()
		p.metrics.OpenConns.Dec()
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
	defer p.h1.CloseIdle()
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
			c.ForceClose()
		} else {
			c.CloseIfIdle(idle)
		}
	}
}
