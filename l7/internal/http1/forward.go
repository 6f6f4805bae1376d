package http1

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
	srv := s.srv
	key := pool.Key{
		TLS:     m.Port.Protocol == rules.HTTPS,
		Proxy:   m.UseEgressProxy,
		Host:    s.canonicalHost(s.entry.Host),
		Port:    s.entry.Port,
		Literal: m.Literal(),
	}
	if srv.cfg.DialOriginal {
		key.Target = s.c.Orig.Addr()
	}
	s.entry.Upstream = "http"
	if key.TLS {
		s.entry.Upstream = "https"
	}
	for attempt := 0; ; attempt++ {
		s.retrying = attempt > 0
		var uc *upConn
		if attempt == 0 { // a retry always gets a new connection: it cannot be stale
			uc = s.pooled(key)
		}
		if uc == nil {
			var err error
			if uc, err = srv.connectUpstream(key, m, s.c.Orig); err != nil {
				return s.upstreamFailed(err, false)
			}
		}
		s.c.SetUpstream(&uc.NC)
		keep, retry := s.exchange(uc)
		s.c.SetUpstream(nil)
		if !retry || attempt > 0 {
			return keep
		}
	}
}

// pooled returns an idle connection for key that passes the reuse check
// (probe.go), closing those that fail it, or nil.
func (s *h1conn) pooled(key pool.Key) *upConn {
	for {
		uc := s.srv.pool.Get(key, s.entry.Start)
		if uc == nil || uc.usable() {
			return uc
		}
		uc.NC.Close()
	}
}

// connectUpstream opens a new upstream connection for key, originating TLS
// (SNI = host, verified, ALPN http/1.1) on HTTPS ports. Plain HTTP with
// useEgressProxy connects to the egress proxy itself (absolute form).
func (srv *Server) connectUpstream(key pool.Key, m rules.Match, orig netip.AddrPort) (*upConn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), srv.cfg.ConnectTimeout)
	defer cancel()
	if m.UseEgressProxy && !key.TLS {
		nc, err := srv.cfg.Dialer.DialEgressProxy(ctx)
		if err != nil {
			return nil, err
		}
		return &upConn{NC: nc, BR: bufio.NewReaderSize(nc, 4096), BW: bufio.NewWriterSize(nc, 4096), Node: pool.Node[*upConn]{Key: key}, Via: srv.cfg.Dialer.EgressProxy()}, nil
	}
	nc, err := srv.cfg.Dialer.Upstream(ctx, m, key.Host, orig)
	if err != nil {
		return nil, err
	}
	if key.TLS {
		tc := tls.Client(nc, srv.cfg.Dialer.TLSConfig(key.Host, []string{"http/1.1"}))
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
	return &upConn{NC: nc, BR: bufio.NewReaderSize(nc, 4096), BW: bufio.NewWriterSize(w, 4096), Node: pool.Node[*upConn]{Key: key}, hw: hw}, nil
}

// isRetryable: the upstream closed a reused connection instead of
// answering (it may have closed it while idle, or failed processing).
func isRetryable(err error) bool {
	return body.IsEOF(err) || errors.Is(err, errConnReset) || errors.Is(err, errBrokenPipe)
}
