package l7

// The address policy (l7/internal/addrpolicy) applied to every upstream dial.

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/egressd/egressd/l7/internal/addrpolicy"
)

// control returns the upstream dialer's ControlContext: the address
// policy, then next (SO_MARK and Config.Control; nil: none).
func (p *Proxy) control(next func(network, address string, c syscall.RawConn) error) func(ctx context.Context, network, address string, c syscall.RawConn) error {
	return func(ctx context.Context, network, address string, c syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("upstream address %q: %w", address, err)
		}
		in := addrpolicy.IntentFrom(ctx)
		if err := p.policy.Check(ap.Addr(), in); err != nil {
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
	in := addrpolicy.IntentFrom(ctx)
	if err := p.policy.Check(ta.AddrPort().Addr(), in); err != nil {
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
