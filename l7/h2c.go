package l7

// HTTP/2 prior knowledge (h2c), gRPC included: the front end and the
// forwarder are l7/internal/h2c's; here every stream is admitted
// (streamlimit.go), decided on its own :authority and the original port,
// and logged.

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/egressd/egressd/l7/internal/h2c"
	"github.com/egressd/egressd/rules"
)

// newH2C returns the Proxy's HTTP/2 server and transports (built on first
// use).
func (p *Proxy) newH2C() *h2c.Server {
	return h2c.New(h2c.Config{
		MaxHeaderBytes:  p.cfg.MaxHeaderBytes,
		IdleTimeout:     p.cfg.IdleTimeout,
		ResponseTimeout: p.cfg.ResponseTimeout,
		ConnectTimeout:  p.cfg.ConnectTimeout,
		UpstreamIdle:    p.cfg.UpstreamIdle,
		Log:             p.log,
		Upstream:        h2cUpstream{p},
		Markers:         h2c.Markers{Denied: markerDenied, Invalid: markerInvalid, Error: markerError},
	})
}

// h2cUpstream is what l7/internal/h2c needs of the Proxy.
type h2cUpstream struct{ p *Proxy }

func (u h2cUpstream) Dial(ctx context.Context, t *h2c.Target) (net.Conn, error) {
	return u.p.dialUpstream(ctx, t.Match, t.Host, t.Orig)
}

func (u h2cUpstream) TLSConfig(serverName string, alpn []string) *tls.Config {
	return u.p.tlsConfig(serverName, alpn)
}

func (u h2cUpstream) Error(err error) (int, string) { return u.p.upstreamError(err) }

// serveH2C serves an HTTP/2 prior-knowledge (h2c) connection, including
// gRPC: every stream is decided on its own :authority and the original port.
// c.br holds the unread client preface, which the HTTP/2 server reads itself.
// It returns once the connection is closed and all its streams are done.
func (p *Proxy) serveH2C(c *clientConn) {
	p.mu.Lock() // Shutdown reads onShutdown under p.mu
	c.onShutdown = p.h2.GoAway
	p.mu.Unlock()
	streams := &h2cStreams{p: p, c: c, clientText: c.client.String(), origText: c.origText}
	if streams.origText == "" {
		streams.origText = c.orig.String()
	}
	p.h2.ServeConn(c.nc, c.br, streams, func(idle bool) {
		// Proxy.Shutdown may close an h2c connection with no open stream.
		if idle {
			c.setIdle()
		} else {
			c.setActive()
		}
	})
}

// h2cStreams is the http.Handler for the streams of one h2c connection.
type h2cStreams struct {
	p *Proxy
	c *clientConn
	// clientText and origText are the connection's addresses for the
	// access log, formatted once (as HTTP/1's h1conn does).
	clientText, origText string
	// target is the upstream of the connection's last allowed stream,
	// shared by the next ones with the same authority, rule and kind
	// (gRPC or not): the Target and its pool key are built once instead of
	// per stream. Streams run concurrently, hence the atomic pointer.
	target atomic.Pointer[h2cTarget]
}

// h2cTarget is a sealed upstream and what it was built from.
type h2cTarget struct {
	m    rules.Match
	host string
	grpc bool
	t    *h2c.Target
}

// targetFor is the sealed upstream of a stream for host allowed by m.
func (s *h2cStreams) targetFor(m rules.Match, host string, grpc bool) *h2c.Target {
	if last := s.target.Load(); last != nil && last.m == m && last.host == host && last.grpc == grpc {
		return last.t
	}
	t := s.p.h2Target(m, host, s.c.orig, grpc)
	s.target.Store(&h2cTarget{m: m, host: host, grpc: grpc, t: t})
	return t
}

func (s *h2cStreams) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p, c := s.p, s.c
	e := accessEntry{
		start:      time.Now(),
		client:     c.client,
		orig:       c.orig,
		clientText: s.clientText,
		origText:   s.origText,
		host:       r.Host,
		port:       c.orig.Port(),
		protocol:   protoNameH2C,
		decision:   decisionInvalid,
		scope:      &c.scope,
	}
	defer p.finish(&e)
	grpc := h2c.IsGRPC(r.Header)
	if grpc {
		e.protocol = protoNameGRPC
	}
	if !p.admitH2Stream(w, c, &e, grpc) {
		return
	}
	defer p.limits.ReleaseStream(c.limitKey)
	if r.Host == "" || r.Method == http.MethodConnect {
		e.reason = "no :authority, or CONNECT"
		p.writeLocalH2(w, &e, grpc, http.StatusBadRequest, e.reason)
		return
	}
	m, ok := p.decideConn(c, &e, r.Host, e.port)
	if !ok {
		e.decision = decisionDeny
		e.reason = "no egress rule allows the host and port"
		p.writeLocalH2(w, &e, grpc, http.StatusForbidden,
			"no egress rule allows "+hostOnly(r.Host)+" on port "+strconv.Itoa(int(e.port)))
		return
	}
	e.decision = decisionAllow
	e.rule = m.Rule.Name
	p.forwardH2(w, r, s.targetFor(m, r.Host, grpc), grpc, &e)
}

// forwardH2 sends an allowed stream upstream (h2c.Server.Forward) and
// records what the client got in e, also when the stream was reset.
func (p *Proxy) forwardH2(w http.ResponseWriter, r *http.Request, t *h2c.Target, grpc bool, e *accessEntry) {
	rec := h2c.Record{Start: e.start}
	defer e.setH2(&rec)
	p.h2.Forward(w, r, t, grpc, &rec)
}

// h2Target is the sealed upstream of a stream allowed by m.
func (p *Proxy) h2Target(m rules.Match, host string, orig netip.AddrPort, grpc bool) *h2c.Target {
	return h2c.Seal(h2c.Target{Match: m, Host: host, Name: hostOnly(host), Orig: orig,
		TLS: m.Port.Protocol == rules.HTTPS, Literal: ruleLiteral(m).IsValid(),
		OrigIP: p.cfg.DialMode == DialOriginal}, grpc)
}

// writeLocalH2 answers a stream with a response egressd makes itself
// (h2c.Server.WriteLocal) and records it in e.
func (p *Proxy) writeLocalH2(w http.ResponseWriter, e *accessEntry, grpc bool, status int, msg string) {
	var rec h2c.Record
	p.h2.WriteLocal(w, &rec, grpc, status, msg)
	e.status, e.bytesOut, e.grpcStatus = rec.Status, rec.BytesOut, rec.GRPCStatus
}

// setH2 records in e what the client of a forwarded stream got.
func (e *accessEntry) setH2(rec *h2c.Record) {
	e.upstream, e.status, e.reason, e.grpcStatus = rec.Upstream, rec.Status, rec.Reason, rec.GRPCStatus
	e.bytesIn, e.bytesOut = rec.BytesIn, rec.BytesOut
}
