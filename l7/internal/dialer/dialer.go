package dialer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"syscall"
	"time"

	"github.com/egressd/egressd/l7/internal/addrpolicy"
	"github.com/egressd/egressd/rules"
)

// Config configures a Dialer; the proxy fills it from its own Config.
type Config struct {
	Original bool          // dial the original destination IP (--dial=original); false: resolve the name
	Resolver *net.Resolver // nil: net.DefaultResolver; made to run Control on its sockets unless it has its own Dial
	// Control runs on every socket the Dialer connects itself (SO_MARK,
	// the embedder's Control); nil: none.
	Control func(network, address string, c syscall.RawConn) error
	// Dial opens TCP connections instead of a net.Dialer; what it returns
	// is checked against the address policy. nil: a net.Dialer.
	Dial           func(ctx context.Context, network, addr string) (net.Conn, error)
	Allow          []netip.Prefix // addresses the policy lets through although of a refused class
	ConnectTimeout time.Duration
	RootCAs        *x509.CertPool // trusted in addition to the system roots
	EgressProxy    *url.URL       // nil: none
	OnEgressRetry  func()         // called for each new connection to the egress proxy tried again; nil: none
	Log            *slog.Logger   // debug lines of egress-proxy retries; not nil
}

// Dialer opens the proxy's upstream connections. It is safe for
// concurrent use.
type Dialer struct {
	cfg     Config
	policy  addrpolicy.Policy
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	egress  *EgressProxy
	tlsSess tls.ClientSessionCache
}

// New checks cfg (the egress proxy URL) and builds a Dialer.
func New(cfg Config) (*Dialer, error) {
	egress, err := ParseEgressProxy(cfg.EgressProxy)
	if err != nil {
		return nil, err
	}
	cfg.Resolver = markedResolver(cfg.Resolver, cfg.Control)
	d := &Dialer{cfg: cfg, egress: egress, tlsSess: tls.NewLRUClientSessionCache(256)}
	d.policy.Allow = cfg.Allow
	d.dial = d.policyDial(cfg.Dial, cfg.Control)
	return d, nil
}

// Policy is the address policy applied to every dial (tests set its
// NodeAddrs).
func (d *Dialer) Policy() *addrpolicy.Policy { return &d.policy }

// Resolver is the resolver the Dialer uses (Config.Resolver, marked).
func (d *Dialer) Resolver() *net.Resolver { return d.cfg.Resolver }

// EgressProxy is the parsed Config.EgressProxy; nil: none.
func (d *Dialer) EgressProxy() *EgressProxy { return d.egress }

// ErrNoEgressProxy: a rule demands the egress proxy but none is configured.
var ErrNoEgressProxy = errors.New("rule requires the egress proxy, and none is configured")

// Upstream dials plain TCP to the upstream of a request m allowed for
// authority (its port, if any, is ignored): the host (a name or an IP
// literal; resolved unless Config.Original) or the original destination
// IP, on the original port, within ConnectTimeout; the address policy lets
// an IP the rule names literally through. m's useEgressProxy makes it a
// tunnel through the egress proxy, never a direct connection. TLS is
// layered by the caller.
func (d *Dialer) Upstream(ctx context.Context, m rules.Match, authority string, orig netip.AddrPort) (net.Conn, error) {
	host, service := rules.HostOnly(authority), ""
	if m.Rule != nil {
		service = m.Rule.Service
	}
	ctx = addrpolicy.WithIntent(ctx, addrpolicy.IntentFor(host, service))
	if m.UseEgressProxy {
		return d.ViaEgressProxy(ctx, host, orig.Port())
	}
	return d.direct(ctx, host, orig)
}

// target is the address Upstream dials for host in the configured mode. A
// name is made absolute: the resolver looks it up as it is, once, never
// under the search list of resolv.conf (which would cost a query per
// search domain and let a cluster-local name shadow an allowed external
// one).
func (d *Dialer) target(host string, orig netip.AddrPort) string {
	if d.cfg.Original {
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

func (d *Dialer) direct(ctx context.Context, host string, orig netip.AddrPort) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.ConnectTimeout)
	defer cancel()
	if d.cfg.Original {
		if err := d.checkOriginal(ctx, host, orig.Addr()); err != nil {
			return nil, err
		}
	}
	addr := d.target(host, orig)
	nc, err := d.dial(ctx, "tcp", addr)
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
func (d *Dialer) checkOriginal(ctx context.Context, host string, orig netip.Addr) error {
	orig = orig.Unmap()
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Unmap() == orig {
			return nil
		}
	} else {
		addrs, err := d.cfg.Resolver.LookupNetIP(ctx, "ip", absoluteName(host))
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

// control returns the upstream dialer's ControlContext: the address
// policy, then next (SO_MARK and Config.Control; nil: none).
func (d *Dialer) control(next func(network, address string, c syscall.RawConn) error) func(ctx context.Context, network, address string, c syscall.RawConn) error {
	return func(ctx context.Context, network, address string, c syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("upstream address %q: %w", address, err)
		}
		in := addrpolicy.IntentFrom(ctx)
		if err := d.policy.Check(ap.Addr(), in); err != nil {
			return err
		}
		if next != nil {
			return next(network, address, c)
		}
		return nil
	}
}

// checkDialed applies the policy to a connection opened by a Config.Dial of
// the embedder's (New's own dialer checks before connect): a refused one is
// closed before a byte is sent.
func (d *Dialer) checkDialed(ctx context.Context, nc net.Conn) error {
	ta, ok := nc.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return nil // not TCP (a test's pipe): nothing to judge
	}
	in := addrpolicy.IntentFrom(ctx)
	if err := d.policy.Check(ta.AddrPort().Addr(), in); err != nil {
		nc.Close()
		return err
	}
	return nil
}

// policyDial is the dial function of the Dialer: a net.Dialer with
// control(next), or custom followed by checkDialed.
func (d *Dialer) policyDial(custom func(ctx context.Context, network, addr string) (net.Conn, error),
	next func(network, address string, c syscall.RawConn) error) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if custom == nil {
		nd := &net.Dialer{Timeout: d.cfg.ConnectTimeout, Resolver: d.cfg.Resolver, ControlContext: d.control(next)}
		return nd.DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := custom(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if err := d.checkDialed(ctx, nc); err != nil {
			return nil, err
		}
		return nc, nil
	}
}
