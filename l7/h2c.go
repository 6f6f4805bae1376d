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

	"github.com/egressd/egressd/l7/internal/client"
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
		Markers:         h2c.Markers{Denied: client.MarkerDenied, Invalid: client.MarkerInvalid, Error: client.MarkerError},
	})
}

// h2cUpstream is what l7/internal/h2c needs of the Proxy.
type h2cUpstream struct{ p *Proxy }

func (u h2cUpstream) Dial(ctx context.Context, t *h2c.Target) (net.Conn, error) {
	return u.p.dialer.Upstream(ctx, t.Match, t.Host, t.Orig)
}

func (u h2cUpstream) TLSConfig(serverName string, alpn []string) *tls.Config {
	return u.p.dialer.TLSConfig(serverName, alpn)
}

func (u h2cUpstream) Error(err error) (int, string) { return u.p.upstreamError(err) }

// serveH2C serves an HTTP/2 prior-knowledge (h2c) connection, including
// gRPC: every stream is decided on its own :authority and the original port.
// c.br holds the unread client preface, which the HTTP/2 server reads itself.
// It returns once the connection is closed and all its streams are done.
func (p *Proxy) serveH2C(c *client.Conn) {
	p.mu.Lock() // Shutdown reads onShutdown under p.mu
	c.OnShutdown = p.h2.GoAway
	p.mu.Unlock()
	streams := &h2cStreams{p: p, c: c, clientText: c.Client.String(), origText: c.OrigText}
	if streams.origText == "" {
		streams.origText = c.Orig.String()
	}
	p.h2.ServeConn(c.NC, c.BR, streams, func(idle bool) {
		// Proxy.Shutdown may close an h2c connection with no open stream.
		if idle {
			c.SetIdle()
		} else {
			c.SetActive()
		}
	})
}

// h2cStreams is the http.Handler for the streams of one h2c connection.
type h2cStreams struct {
	p *Proxy
	c *client.Conn
	// clientText and origText are the connection's addresses for the
	// access log, formatted once (as l7/internal/http1 does per connection).
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
	t := s.p.h2Target(m, host, s.c.Orig, grpc)
	s.target.Store(&h2cTarget{m: m, host: host, grpc: grpc, t: t})
	return t
}

func (s *h2cStreams) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p, c := s.p, s.c
	e := client.Entry{
		Start:      time.Now(),
		Client:     c.Client,
		Orig:       c.Orig,
		ClientText: s.clientText,
		OrigText:   s.origText,
		Host:       r.Host,
		Port:       c.Orig.Port(),
		Protocol:   client.ProtoH2C,
		Decision:   client.DecisionInvalid,
		Scope:      &c.Scope,
	}
	defer p.finish(&e)
	grpc := h2c.IsGRPC(r.Header)
	if grpc {
		e.Protocol = client.ProtoGRPC
	}
	if !p.admitH2Stream(w, c, &e, grpc) {
		return
	}
	defer p.limits.ReleaseStream(c.LimitKey)
	if r.Host == "" || r.Method == http.MethodConnect {
		e.Reason = "no :authority, or CONNECT"
		p.writeLocalH2(w, &e, grpc, http.StatusBadRequest, e.Reason)
		return
	}
	m, ok := p.decideConn(c, &e, r.Host, e.Port)
	if !ok {
		e.Decision = client.DecisionDeny
		e.Reason = "no egress rule allows the host and port"
		p.writeLocalH2(w, &e, grpc, http.StatusForbidden,
			"no egress rule allows "+rules.HostOnly(r.Host)+" on port "+strconv.Itoa(int(e.Port)))
		return
	}
	e.Decision = client.DecisionAllow
	e.Rule = m.Rule.Name
	p.forwardH2(w, r, s.targetFor(m, r.Host, grpc), grpc, &e)
}

// forwardH2 sends an allowed stream upstream (h2c.Server.Forward) and
// records what the client got in e, also when the stream was reset.
func (p *Proxy) forwardH2(w http.ResponseWriter, r *http.Request, t *h2c.Target, grpc bool, e *client.Entry) {
	rec := h2c.Record{Start: e.Start}
	defer setH2(e, &rec)
	p.h2.Forward(w, r, t, grpc, &rec)
}

// h2Target is the sealed upstream of a stream allowed by m.
func (p *Proxy) h2Target(m rules.Match, host string, orig netip.AddrPort, grpc bool) *h2c.Target {
	return h2c.Seal(h2c.Target{Match: m, Host: host, Name: rules.HostOnly(host), Orig: orig,
		TLS: m.Port.Protocol == rules.HTTPS, Literal: m.Literal().IsValid(),
		OrigIP: p.cfg.DialMode == DialOriginal}, grpc)
}

// writeLocalH2 answers a stream with a response egressd makes itself
// (h2c.Server.WriteLocal) and records it in e.
func (p *Proxy) writeLocalH2(w http.ResponseWriter, e *client.Entry, grpc bool, status int, msg string) {
	var rec h2c.Record
	p.h2.WriteLocal(w, &rec, grpc, status, msg)
	e.Status, e.BytesOut, e.GRPCStatus = rec.Status, rec.BytesOut, rec.GRPCStatus
}

// setH2 records in e what the client of a forwarded stream got.
func setH2(e *client.Entry, rec *h2c.Record) {
	e.Upstream, e.Status, e.Reason, e.GRPCStatus = rec.Upstream, rec.Status, rec.Reason, rec.GRPCStatus
	e.BytesIn, e.BytesOut = rec.BytesIn, rec.BytesOut
}
