// Package addrpolicy is the upstream address policy: egressd runs with the
// node's network identity, so an allowed name must not make it a deputy for
// the node. Every address
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
//
// Why a package of its own: it is the rule that keeps an allowed name from
// reaching the node's own services; kept apart, its classes are tested on
// their own (TestAddrClass) and it depends on nothing of the proxy. l7
// applies it to every dial (l7/internal/dialer: the dialer's ControlContext,
// and a check of connections an embedder's Config.Dial opened).
//
// Files: addrpolicy.go (RefusedError; Intent, what a dial may reach beyond
// the classes; Policy.Check; the address classes; the node's addresses,
// refreshed at most every second).
package addrpolicy

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// RefusedError is an upstream address the policy refused. It maps to
// 403 (l7/internal/dialer.Failure): the request was allowed, the address it leads to
// is not, and trying again will not change that.
type RefusedError struct {
	Addr   netip.Addr
	Host   string // the name or literal it was dialled for
	Reason string // for people: "loopback"
	Code   string // metric label: "loopback"
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("upstream address %s of %s refused: %s", e.Addr, e.Host, e.Reason)
}

// Intent is what the policy needs to know about a dial beyond its
// address; dialUpstream puts it in the dial's context.
type Intent struct {
	host    string     // for the message
	literal netip.Addr // the rule (or the operator, for the egress proxy) names this IP: allowed
}

type intentKey struct{}

// WithIntent returns ctx carrying in, for the dial's Check.
func WithIntent(ctx context.Context, in *Intent) context.Context {
	return context.WithValue(ctx, intentKey{}, in)
}

// IntentFrom returns the intent WithIntent put in ctx, or nil.
func IntentFrom(ctx context.Context) *Intent {
	in, _ := ctx.Value(intentKey{}).(*Intent)
	return in
}

// IntentFor is the dial intent for host allowed by a rule whose service is
// service: a rule naming an IP literally allows that IP whatever its class.
func IntentFor(host, service string) *Intent {
	in := &Intent{host: host}
	if a, err := netip.ParseAddr(service); err == nil {
		in.literal = a.Unmap()
	}
	return in
}

// Policy decides upstream addresses. Its zero value refuses the
// special classes and knows no node address.
type Policy struct {
	Allow []netip.Prefix
	// nodeAddrs lists the node's own addresses; nil: net.InterfaceAddrs.
	NodeAddrs func() ([]netip.Addr, error)

	mu      sync.Mutex
	node    map[netip.Addr]struct{}
	nodeAt  time.Time
	nodeErr error
}

// nodeAddrsTTL is how long the node's address list is reused: a refresh is
// one netlink dump, too much for every connect. An address added to the node
// is refused at most this much later.
const nodeAddrsTTL = time.Second

// Check returns nil when a may be dialled for in, else an *addrRefusedError.
func (pol *Policy) Check(a netip.Addr, in *Intent) error {
	a = a.Unmap()
	host := a.String()
	if in != nil {
		host = in.host
		if in.literal.IsValid() && in.literal == a {
			return nil
		}
	}
	for _, p := range pol.Allow {
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
	return &RefusedError{Addr: a, Host: host, Reason: reason, Code: code}
}

// nat64 is the NAT64 well-known prefix (RFC 6052): its last 32 bits are the
// IPv4 address a NAT64 translates it to.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// class is addrClass, then the node's own addresses.
func (pol *Policy) class(a netip.Addr) (code, reason string) {
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
func (pol *Policy) isNode(a netip.Addr) bool {
	pol.mu.Lock()
	defer pol.mu.Unlock()
	if now := time.Now(); pol.node == nil || now.Sub(pol.nodeAt) > nodeAddrsTTL {
		pol.nodeAt = now
		pol.node, pol.nodeErr = readNodeAddrs(pol.NodeAddrs)
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
