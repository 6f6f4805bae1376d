package l7

import (
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/egressd/egressd/l7/internal/addrpolicy"
	"github.com/egressd/egressd/l7/internal/client"
	"github.com/egressd/egressd/l7/internal/dialer"
	"github.com/egressd/egressd/rules"
)

// decide reports the rule that allows host (an authority: it may carry a
// port, which is ignored) on the original destination port. In audit mode
// a request no rule allows is allowed too, marked in e (audit.go).
func (p *Proxy) decide(e *client.Entry, host string, port uint16) (rules.Match, bool) {
	src := p.cfg.Rules
	if e.Scope != nil && e.Scope.Rules != nil {
		src = e.Scope.Rules
	}
	if set := src.Current(); set != nil {
		if m, ok := set.Match(rules.HostOnly(host), port); ok {
			return m, true
		}
	}
	if p.cfg.Audit && host != "" {
		return p.wouldDeny(e, host, port), true
	}
	return rules.Match{}, false
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
	p.metrics.UpstreamErrors.With(kind).Inc()
	var refused *addrpolicy.RefusedError
	if errors.As(err, &refused) {
		p.metrics.AddrRefused.With(refused.Code).Inc()
		p.log.Warn("upstream address refused", "addr", refused.Addr, "host", refused.Host, "reason", refused.Reason)
	}
	return status, reason
}
