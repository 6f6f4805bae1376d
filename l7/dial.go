package l7

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/egressd/egressd/l7/internal/addrpolicy"
	"github.com/egressd/egressd/l7/internal/dialer"
	"github.com/egressd/egressd/rules"
)

// decide reports the rule that allows host (an authority: it may carry a
// port, which is ignored) on the original destination port. In audit mode
// a request no rule allows is allowed too, marked in e (audit.go).
func (p *Proxy) decide(e *accessEntry, host string, port uint16) (rules.Match, bool) {
	src := p.cfg.Rules
	if e.scope != nil && e.scope.Rules != nil {
		src = e.scope.Rules
	}
	if set := src.Current(); set != nil {
		if m, ok := set.Match(hostOnly(host), port); ok {
			return m, true
		}
	}
	if p.cfg.Audit && host != "" {
		return p.wouldDeny(e, host, port), true
	}
	return rules.Match{}, false
}

// hostOnly strips a port and IPv6 brackets from an authority.
func hostOnly(authority string) string {
	if authority == "" {
		return ""
	}
	if authority[0] == '[' {
		if i := indexByte(authority, ']'); i > 0 {
			return authority[1:i]
		}
		return authority
	}
	if i := lastIndexByte(authority, ':'); i >= 0 && indexByte(authority, ':') == i {
		return authority[:i]
	}
	return authority
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

func lastIndexByte(s string, c byte) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// ruleLiteral is the IP m's rule names literally (the address policy lets
// it through), zero for none; upstream connection pools are keyed by it.
func ruleLiteral(m rules.Match) netip.Addr {
	if m.Rule == nil || !maybeIPLiteral(m.Rule.Service) {
		return netip.Addr{}
	}
	a, _ := netip.ParseAddr(m.Rule.Service)
	return a.Unmap()
}

// maybeIPLiteral: s could be an IP address (IPv4 starts with a digit, IPv6
// holds a colon). It runs on every request: netip.ParseAddr allocates its
// error for a name (48 B per request, the keep-alive path's only allocation).
func maybeIPLiteral(s string) bool {
	return s != "" && (s[0] >= '0' && s[0] <= '9' || strings.IndexByte(s, ':') >= 0)
}

// dialUpstream dials plain TCP to the upstream of an allowed request
// (l7/internal/dialer): host (resolved, DialResolve) or the original
// destination IP (DialOriginal), on the original port, with Config.Mark and
// ConnectTimeout. Rules with UseEgressProxy never go direct. TLS is layered
// by the caller.
func (p *Proxy) dialUpstream(ctx context.Context, m rules.Match, host string, orig netip.AddrPort) (net.Conn, error) {
	service := ""
	if m.Rule != nil {
		service = m.Rule.Service
	}
	return p.dialer.Upstream(ctx, hostOnly(host), service, m.UseEgressProxy, orig)
}

// MarkControl returns a net.Dialer Control function that puts SO_MARK mark on
// the socket before connect; nil for mark 0.
func MarkControl(mark uint32) func(network, address string, c syscall.RawConn) error {
	if mark == 0 {
		return nil
	}
	return func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
		})
		if err == nil {
			err = serr
		}
		if err != nil {
			return fmt.Errorf("set SO_MARK %#x: %w", mark, err)
		}
		return nil
	}
}

// tlsConfig is the client TLS configuration for originating TLS to
// serverName, verified, never skipped (dialer.Dialer.TLSConfig).
func (p *Proxy) tlsConfig(serverName string, alpn []string) *tls.Config {
	return p.dialer.TLSConfig(serverName, alpn)
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

// upstreamError counts err by kind (dialer.Failure: upstream errors become
// statuses there, in one place) and returns the status and reason for the
// client. Helper for every protocol handler.
func (p *Proxy) upstreamError(err error) (status int, reason string) {
	status, kind, reason := dialer.Failure(err)
	p.metrics.UpstreamErrors.WithLabelValues(kind).Inc()
	var refused *addrpolicy.RefusedError
	if errors.As(err, &refused) {
		p.metrics.AddrRefused.WithLabelValues(refused.Code).Inc()
		p.log.Warn("upstream address refused", "addr", refused.Addr, "host", refused.Host, "reason", refused.Reason)
	}
	return status, reason
}
