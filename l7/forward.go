package l7

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/egressd/egressd/l7/internal/body"
	"github.com/egressd/egressd/l7/internal/pool"
	"github.com/egressd/egressd/rules"
)

// forward sends the allowed request upstream and relays the response; it
// reports whether the client connection stays usable.
func (s *h1conn) forward(m rules.Match) bool {
	p := s.p
	key := pool.Key{
		TLS:     m.Port.Protocol == rules.HTTPS,
		Proxy:   m.UseEgressProxy,
		Host:    s.canonicalHost(s.entry.host),
		Port:    s.entry.port,
		Literal: ruleLiteral(m),
	}
	if p.cfg.DialMode == DialOriginal {
		key.Target = s.c.orig.Addr()
	}
	s.entry.upstream = "http"
	if key.TLS {
		s.entry.upstream = "https"
	}
	for attempt := 0; ; attempt++ {
		s.retrying = attempt > 0
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
func (s *h1conn) pooled(key pool.Key) *upConn {
	for {
		uc := s.p.pool.Get(key, s.entry.start)
		if uc == nil || uc.usable() {
			return uc
		}
		uc.nc.Close()
	}
}

// connectUpstream opens a new upstream connection for key, originating TLS
// (SNI = host, verified, ALPN http/1.1) on HTTPS ports. Plain HTTP with
// useEgressProxy connects to the egress proxy itself (egressproxy.go).
func (p *Proxy) connectUpstream(key pool.Key, m rules.Match, orig netip.AddrPort) (*upConn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.ConnectTimeout)
	defer cancel()
	if m.UseEgressProxy && !key.TLS {
		nc, err := p.dialEgressProxy(ctx)
		if err != nil {
			return nil, err
		}
		return &upConn{nc: nc, br: bufio.NewReaderSize(nc, 4096), bw: bufio.NewWriterSize(nc, 4096), Node: pool.Node[*upConn]{Key: key}, via: p.egress}, nil
	}
	nc, err := p.dialUpstream(ctx, m, key.Host, orig)
	if err != nil {
		return nil, err
	}
	if key.TLS {
		tc := tls.Client(nc, p.tlsConfig(key.Host, []string{"http/1.1"}))
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			if strings.Contains(err.Error(), "no application protocol") {
				err = fmt.Errorf("%w (the upstream refused ALPN http/1.1: it may speak only HTTP/2)", err)
			}
			return nil, err
		}
		nc = tc
	}
	w, hw := newUpstreamWriter(nc) // headwrite.go
	return &upConn{nc: nc, br: bufio.NewReaderSize(nc, 4096), bw: bufio.NewWriterSize(w, 4096), Node: pool.Node[*upConn]{Key: key}, hw: hw}, nil
}

// isRetryable: the upstream closed a reused connection instead of
// answering (it may have closed it while idle, or failed processing).
func isRetryable(err error) bool {
	return body.IsEOF(err) || errors.Is(err, errConnReset) || errors.Is(err, errBrokenPipe)
}
