package l7

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/egressd/egressd/l7/internal/addrpolicy"
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

// errNoEgressProxy: a rule demands the egress proxy but none is configured.
var errNoEgressProxy = errors.New("rule requires the egress proxy, and none is configured")

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

// dialUpstream dials plain TCP to the upstream of an allowed request: host
// (resolved, DialResolve) or the original destination IP (DialOriginal), on
// the original port, with Config.Mark and ConnectTimeout. Rules with
// UseEgressProxy never go direct. TLS is layered by the caller.
func (p *Proxy) dialUpstream(ctx context.Context, m rules.Match, host string, orig netip.AddrPort) (net.Conn, error) {
	service := ""
	if m.Rule != nil {
		service = m.Rule.Service
	}
	ctx = addrpolicy.WithIntent(ctx, addrpolicy.IntentFor(hostOnly(host), service))
	if m.UseEgressProxy {
		return p.dialViaEgressProxy(ctx, hostOnly(host), orig.Port())
	}
	return p.dialDirect(ctx, hostOnly(host), orig)
}

// dialTarget is the address dialUpstream dials for host (port excluded from
// host) in the configured mode. A name is made absolute: the resolver looks
// it up as it is, once, never under the search list of resolv.conf (which
// would cost a query per search domain and let a cluster-local name shadow
// an allowed external one).
func (p *Proxy) dialTarget(host string, orig netip.AddrPort) string {
	if p.cfg.DialMode == DialOriginal {
		return orig.String()
	}
	return net.JoinHostPort(absoluteName(host), strconv.Itoa(int(orig.Port())))
}

// absoluteName adds the root's dot to a DNS name; IP literals and names
// that have it are returned as they are.
func absoluteName(host string) string {
	if host == "" || host[len(host)-1] == '.' {
		return host
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return host
	}
	return host + "."
}

func (p *Proxy) dialDirect(ctx context.Context, host string, orig netip.AddrPort) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.ConnectTimeout)
	defer cancel()
	if p.cfg.DialMode == DialOriginal {
		if err := p.checkOriginal(ctx, host, orig.Addr()); err != nil {
			return nil, err
		}
	}
	addr := p.dialTarget(host, orig)
	nc, err := p.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return nc, nil
}

// checkOriginal is DialOriginal's condition: the address the app connected
// to must be one the matched host names (the host itself when it is an IP
// literal, else one of its DNS answers, looked up as an absolute name).
// Otherwise a Host or SNI naming an allowed service would carry the request
// to any IP of the app's choosing.
func (p *Proxy) checkOriginal(ctx context.Context, host string, orig netip.Addr) error {
	orig = orig.Unmap()
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Unmap() == orig {
			return nil
		}
	} else {
		addrs, err := p.cfg.Resolver.LookupNetIP(ctx, "ip", absoluteName(host))
		if err != nil {
			return fmt.Errorf("--dial=original: %w", err)
		}
		for _, a := range addrs {
			if a.Unmap() == orig {
				return nil
			}
		}
	}
	return &addrpolicy.RefusedError{Addr: orig, Host: host, Code: "not_original",
		Reason: "the original destination is not an address of " + host + " (--dial=original)"}
}

// markedResolver returns r (nil: net.DefaultResolver) made to run control
// (Mark and Config.Control) on its DNS sockets, so that the proxy's own
// lookups (TCP DNS included) are never redirected back to it. A resolver
// with its own Dial is returned as is: that Dial owns its sockets.
func markedResolver(r *net.Resolver, control func(network, address string, c syscall.RawConn) error) *net.Resolver {
	if r == nil {
		r = net.DefaultResolver
	}
	if control == nil || r.Dial != nil {
		return r
	}
	d := &net.Dialer{Control: control}
	return &net.Resolver{PreferGo: true, StrictErrors: r.StrictErrors, Dial: d.DialContext}
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
// serverName (a DNS name or an IP literal): the chain and the name are
// verified against the system roots and Config.RootCAs; there is no way to
// skip verification.
func (p *Proxy) tlsConfig(serverName string, alpn []string) *tls.Config {
	return &tls.Config{
		ServerName:         serverName,
		NextProtos:         alpn,
		MinVersion:         tls.VersionTLS12,
		ClientSessionCache: p.tlsSess,
		// Verification is done in VerifyConnection (never skipped) so that
		// both the system pool and RootCAs are tried.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return p.verifyPeer(serverName, cs)
		},
	}
}

// verifyPeer verifies the server's chain and that it names name (a DNS
// name, or an IP literal against the IP SANs), against the system roots,
// then against Config.RootCAs. name is the configured one, never
// ConnectionState.ServerName, which Go leaves empty for IP literals (no SNI
// is sent for them): an empty name would check no name at all.
func (p *Proxy) verifyPeer(name string, cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tls: server sent no certificate")
	}
	if name == "" {
		return errors.New("tls: no server name to verify")
	}
	opts := x509.VerifyOptions{DNSName: name, Intermediates: x509.NewCertPool()}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(opts)
	if err == nil || p.cfg.RootCAs == nil {
		return err
	}
	opts.Roots = p.cfg.RootCAs
	if _, err2 := cs.PeerCertificates[0].Verify(opts); err2 != nil {
		var hn x509.HostnameError
		if errors.As(err2, &hn) {
			return err2
		}
		return err
	}
	return nil
}
