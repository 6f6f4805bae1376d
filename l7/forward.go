package l7

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net/netip"
	"time"

	"github.com/egressd/egressd/rules"
)

// forward sends the allowed request upstream and relays the response; it
// reports whether the client connection stays usable.
func (s *h1conn) forward(m rules.Match) bool {
	p := s.p
	key := poolKey{
		tls:   m.Port.Protocol == rules.HTTPS,
		proxy: m.UseEgressProxy,
		host:  canonicalHost(hostOnly(s.entry.host)),
		port:  s.entry.port,
	}
	if p.cfg.DialMode == DialOriginal {
		key.target = s.c.orig.Addr()
	}
	s.entry.upstream = "http"
	if key.tls {
		s.entry.upstream = "https"
	}
	for attempt := 0; ; attempt++ {
		var uc *upConn
		if attempt == 0 { // a retry always gets a new connection: it cannot be stale
			uc = s.pooled(key)
		}
		if uc == nil {
			var err error
			if uc, err = p.connectUpstream(key, m, s.c.orig); err != nil {
				return s.upstreamFailed(err, false)
			}
		}
		s.c.setUpstream(uc)
		keep, retry := s.exchange(uc)
		s.c.setUpstream(nil)
		if !retry || attempt > 0 {
			return keep
		}
	}
}

// pooled returns an idle connection for key that passes the reuse check
// (probe.go), closing those that fail it, or nil.
func (s *h1conn) pooled(key poolKey) *upConn {
	for {
		uc := s.p.pool.get(key, s.entry.start)
		if uc == nil || uc.usable() {
			return uc
		}
		uc.nc.Close()
	}
}

// canonicalHost lower-cases h and drops a trailing dot, allocating only when
// it has to.
func canonicalHost(h string) string {
	if len(h) > 0 && h[len(h)-1] == '.' {
		h = h[:len(h)-1]
	}
	for i := 0; i < len(h); i++ {
		if 'A' <= h[i] && h[i] <= 'Z' {
			b := []byte(h)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return h
}

// connectUpstream opens a new upstream connection for key, originating TLS
// (SNI = host, verified, ALPN http/1.1) on HTTPS ports. Plain HTTP with
// useEgressProxy connects to the egress proxy itself (egressproxy.go).
func (p *Proxy) connectUpstream(key poolKey, m rules.Match, orig netip.AddrPort) (*upConn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.ConnectTimeout)
	defer cancel()
	if m.UseEgressProxy && !key.tls {
		nc, err := p.dialEgressProxy(ctx)
		if err != nil {
			return nil, err
		}
		return &upConn{nc: nc, br: bufio.NewReaderSize(nc, 4096), bw: bufio.NewWriterSize(nc, 4096), key: key, via: p.egress}, nil
	}
	nc, err := p.dialUpstream(ctx, m, key.host, orig)
	if err != nil {
		return nil, err
	}
	if key.tls {
		tc := tls.Client(nc, p.tlsConfig(key.host, []string{"http/1.1"}))
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, err
		}
		nc = tc
	}
	return &upConn{nc: nc, br: bufio.NewReaderSize(nc, 4096), bw: bufio.NewWriterSize(nc, 4096), key: key}, nil
}

// upstreamFailed answers 502/504 for an upstream that could not be reached
// or failed before a response head was relayed.
func (s *h1conn) upstreamFailed(err error, bodyRead bool) bool {
	status, reason := s.p.upstreamError(err)
	keep := s.keepAlive() && (bodyRead || s.discardBody())
	s.local(status, reason, markerError, !keep)
	return keep
}

// exchange does one request/response on uc. keep: the client connection
// stays usable; retry: uc was a stale pooled connection that failed before
// anything was consumed, and the request may be sent again on a new one.
func (s *h1conn) exchange(uc *upConn) (keep, retry bool) {
	r := &s.req
	now := time.Now()
	uc.wdl.setWrite(uc.nc, now, s.p.cfg.ResponseTimeout)
	s.writeRequestHead(uc.bw, uc.via)
	bodyRead := !r.hasBody()
	if r.hasBody() {
		if r.expectContinue && r.minor == 1 {
			s.c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			s.c.bw.Flush()
		}
		pm := s.clientPump(uc)
		err := pm.requestBody(r)
		s.entry.bytesIn = pm.n
		if err != nil {
			uc.nc.Close()
			return s.bodyFailed(err), false
		}
		bodyRead = true
		now = time.Now() // the response is awaited from the end of the body on
	}
	s.resp.buf = s.resp.buf[:0] // stays empty until a byte of the response arrives
	err := uc.bw.Flush()
	if err == nil {
		err = s.readResponseHead(uc, now)
	}
	if err != nil {
		uc.nc.Close()
		if uc.reused && len(s.resp.buf) == 0 && isRetryable(err) && r.replayable() {
			return false, true
		}
		return s.upstreamFailed(err, bodyRead), false
	}
	for s.resp.status < 200 {
		if s.resp.status == 101 {
			if !r.wantsUpgrade() {
				uc.nc.Close()
				return s.upstreamFailed(errors.Join(errUpstreamProtocol, errors.New("101 without an Upgrade request")), true), false
			}
			s.spliceUpgrade(uc)
			return false, false
		}
		if r.minor == 1 { // 1xx are relayed to HTTP/1.1 clients only
			s.writeResponseHead(false, false)
			s.c.bw.Flush()
		}
		if err := s.readResponseHead(uc, time.Now()); err != nil {
			uc.nc.Close()
			return s.upstreamFailed(err, true), false
		}
	}
	return s.relayResponse(uc), false
}

// readResponseHead reads and parses the response head within ResponseTimeout
// from now.
func (s *h1conn) readResponseHead(uc *upConn, now time.Time) error {
	uc.rdl.setRead(uc.nc, now, s.p.cfg.ResponseTimeout)
	if err := s.resp.readHead(uc.br, s.p.cfg.MaxHeaderBytes); err != nil {
		if errors.Is(err, errHeadTooLarge) || errors.Is(err, errBareLF) || errors.Is(err, errMalformed) {
			return errors.Join(errUpstreamProtocol, err)
		}
		return err
	}
	if err := s.resp.parseResponse(); err != nil {
		return err
	}
	if uc.via != nil && s.resp.status == 407 { // the egress proxy refused us, not the upstream
		return uc.via.fail(errProxyAuth)
	}
	return nil
}

// isRetryable: the upstream closed a reused connection instead of
// answering (it may have closed it while idle, or failed processing).
func isRetryable(err error) bool {
	return isEOF(err) || errors.Is(err, errConnReset) || errors.Is(err, errBrokenPipe)
}

// replayable reports whether r may be sent again after a reused upstream
// connection failed without a byte of response: the rule of net/http's
// Transport (RFC 9110 9.2.2), since the upstream may have processed it. A
// body is never replayed: it was streamed, not kept.
func (r *request) replayable() bool {
	if r.hasBody() {
		return false
	}
	switch string(r.bytes(r.method)) {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	return r.hasField("Idempotency-Key") || r.hasField("X-Idempotency-Key")
}

// hasField reports whether h has a field named name (not hop-by-hop).
func (h *head) hasField(name string) bool {
	for i := range h.fields {
		if f := &h.fields[i]; f.kind == fieldOther && equalFold(h.bytes(f.name), name) {
			return true
		}
	}
	return false
}

// bodyFailed handles a request body that could not be moved upstream.
func (s *h1conn) bodyFailed(err error) bool {
	var ce *copyError
	if errors.As(err, &ce) && ce.write {
		s.p.upstreamError(ce.err)
		s.local(502, "upstream failed while receiving the request body", markerError, true)
		return false
	}
	if errors.Is(err, errBadChunk) {
		s.entry.decision = decisionInvalid
		s.local(400, "invalid chunked request body", markerInvalid, true)
		return false
	}
	s.entry.reason = "client went away during the request body"
	s.p.finish(&s.entry)
	return false
}
