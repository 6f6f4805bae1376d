package l7

// The upstream address policy: egressd runs with the node's network identity,
// so an allowed name must not make it a deputy for the node. Every address
// egressd connects to (a DNS answer, an IP literal from a Host, the original
// destination, the gateway's targets, the egress proxy) is checked in the
// dialer's ControlContext, which sees the final address of each attempt just
// before connect(2): no path can skip it. Refused are loopback, unspecified,
// link-local (the metadata address 169.254.169.254 among them), the cloud
// metadata services outside link-local (AWS's and Google Cloud's IPv6 ones,
// Alibaba Cloud's 100.100.100.200), multicast, limited broadcast and the
// node's own addresses — also as the IPv4 half of a NAT64 address
// (64:ff9b::/96), which a NAT64 on the node or its gateway translates to
// them — unless Config.AllowUpstream holds the address or the matched rule
// names that IP literally.

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"
)

// addrRefusedError is an upstream address the policy refused. It maps to
// 403 (upstreamFailure): the request was allowed, the address it leads to
// is not, and trying again will not change that.
type addrRefusedError struct {
	addr   netip.Addr
	host   string // the name or literal it was dialled for
	reason string // for people: "loopback"
	code   string // metric label: "loopback"
}

func (e *addrRefusedError) Error() string {
	return fmt.Sprintf("upstream address %s of %s refused: %s", e.addr, e.host, e.reason)
}

// dialIntent is what the policy needs to know about a dial beyond its
// address; dialUpstream puts it in the dial's context.
type dialIntent struct {
	host    string     // for the message
	literal netip.Addr // the rule (or the operator, for the egress proxy) names this IP: allowed
}

type dialIntentKey struct{}

func withIntent(ctx context.Context, in *dialIntent) context.Context {
	return context.WithValue(ctx, dialIntentKey{}, in)
}

// intentFor is the dial intent for host allowed by a rule whose service is
// service: a rule naming an IP literally allows that IP whatever its class.
func intentFor(host, service string) *dialIntent {
	in := &dialIntent{host: host}
	if a, err := netip.ParseAddr(service); err == nil {
		in.literal = a.Unmap()
	}
	return in
}

// addrPolicy decides upstream addresses. Its zero value refuses the
// special classes and knows no node address.
type addrPolicy struct {
	allow []netip.Prefix
	// nodeAddrs lists the node's own addresses; nil: net.InterfaceAddrs.
	nodeAddrs func() ([]netip.Addr, error)

	mu      sync.Mutex
	node    map[netip.Addr]struct{}
	nodeAt  time.Time
	nodeErr error
}

// nodeAddrsTTL is how long the node's address list is reused: a refresh is
// one netlink dump, too much for every connect. An address added to the node
// is refused at most this much later.
const nodeAddrsTTL = time.Second

// check returns nil when a may be dialled for in, else an *addrRefusedError.
func (pol *addrPolicy) check(a netip.Addr, in *dialIntent) error {
	a = a.Unmap()
	host := a.String()
	if in != nil {
		host = in.host
		if in.literal.IsValid() && in.literal == a {
			return nil
		}
	}
	for _, p := range pol.allow {
		if p.Contains(a) {
			return nil
		}
	}
	code, reason := pol.class(a)
	if code == "" && nat64.Contains(a) {
		b := a.As16()
		code, reason = pol.class(netip.AddrFrom4([4]byte(b[12:])))
		if code != "" {
			reason += " (the IPv4 address in this NAT64 address)"
		}
	}
	if code == "" {
		return nil
	}
	return &addrRefusedError{addr: a, host: host, reason: reason, code: code}
}

// nat64 is the NAT64 well-known prefix (RFC 6052): its last 32 bits are the
// IPv4 address a NAT64 translates it to.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// class is addrClass, then the node's own addresses.
func (pol *addrPolicy) class(a netip.Addr) (code, reason string) {
	code, reason = addrClass(a)
	if code == "" && pol.isNode(a) {
		code, reason = "node_address", "an address of this node"
	}
	return code, reason
}

// metadataAddrs are cloud metadata services outside link-local: AWS's
// IPv6 instance metadata (fd00:ec2::254), Google Cloud's IPv6 metadata
// server (fd20:ce::254), Alibaba Cloud's metadata (100.100.100.200).
var metadataAddrs = map[netip.Addr]bool{
	netip.MustParseAddr("fd00:ec2::254"):   true,
	netip.MustParseAddr("fd20:ce::254"):    true,
	netip.MustParseAddr("100.100.100.200"): true,
}

// addrClass names the special class of a (unmapped), "" for none.
func addrClass(a netip.Addr) (code, reason string) {
	switch {
	case a.IsLoopback():
		return "loopback", "loopback"
	case a.IsUnspecified(), a.Is4() && a.As4()[0] == 0:
		return "unspecified", "unspecified address"
	case a.IsLinkLocalUnicast():
		return "link_local", "link-local (cloud metadata and the like)"
	case metadataAddrs[a]:
		return "metadata", "a cloud metadata service"
	case a.IsMulticast():
		return "multicast", "multicast"
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "broadcast", "broadcast"
	}
	return "", ""
}

// isNode reports whether a is one of the node's own addresses. When the list
// cannot be read, every address counts as the node's (fail closed).
func (pol *addrPolicy) isNode(a netip.Addr) bool {
	pol.mu.Lock()
	defer pol.mu.Unlock()
	if now := time.Now(); pol.node == nil || now.Sub(pol.nodeAt) > nodeAddrsTTL {
		pol.nodeAt = now
		pol.node, pol.nodeErr = readNodeAddrs(pol.nodeAddrs)
	}
	if pol.nodeErr != nil {
		return true
	}
	_, ok := pol.node[a]
	return ok
}

func readNodeAddrs(list func() ([]netip.Addr, error)) (map[netip.Addr]struct{}, error) {
	if list == nil {
		list = interfaceAddrs
	}
	as, err := list()
	m := make(map[netip.Addr]struct{}, len(as))
	for _, a := range as {
		m[a.Unmap()] = struct{}{}
	}
	return m, err
}

func interfaceAddrs() ([]netip.Addr, error) {
	ifas, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("list the node's addresses: %w", err)
	}
	var out []netip.Addr
	for _, ifa := range ifas {
		if n, ok := ifa.(*net.IPNet); ok {
			if a, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, a.Unmap())
			}
		}
	}
	return out, nil
}

// control returns the upstream dialer's ControlContext: the address
// policy, then next (SO_MARK and Config.Control; nil: none).
func (p *Proxy) control(next func(network, address string, c syscall.RawConn) error) func(ctx context.Context, network, address string, c syscall.RawConn) error {
	return func(ctx context.Context, network, address string, c syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("upstream address %q: %w", address, err)
		}
		in, _ := ctx.Value(dialIntentKey{}).(*dialIntent)
		if err := p.policy.check(ap.Addr(), in); err != nil {
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
func (p *Proxy) checkDialed(ctx context.Context, nc net.Conn) error {
	ta, ok := nc.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return nil // not TCP (a test's pipe): nothing to judge
	}
	in, _ := ctx.Value(dialIntentKey{}).(*dialIntent)
	if err := p.policy.check(ta.AddrPort().Addr(), in); err != nil {
		nc.Close()
		return err
	}
	return nil
}

// policyDial is the dial function of the Proxy: New's own net.Dialer with
// control(next), or custom followed by checkDialed.
func (p *Proxy) policyDial(custom func(ctx context.Context, network, addr string) (net.Conn, error),
	next func(network, address string, c syscall.RawConn) error) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if custom == nil {
		d := &net.Dialer{Timeout: p.cfg.ConnectTimeout, Resolver: p.cfg.Resolver, ControlContext: p.control(next)}
		return d.DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := custom(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if err := p.checkDialed(ctx, nc); err != nil {
			return nil, err
		}
		return nc, nil
	}
}
