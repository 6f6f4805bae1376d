package l7

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/egressd/egressd/l7/internal/client"
	"github.com/egressd/egressd/l7/internal/limit"
)

// Admission at accept: a connection over a limit is shed — closed at once,
// before a byte of it is read — so that one client cannot take the fds,
// memory or goroutines the others need. The limits and their counts are
// l7/internal/limit's; here they are applied to accepted connections.
// Shed connections are counted by reason and logged at most once per 5 s
// per reason, with the count since the last line.

// shed records a shed connection: the metric, and a log line unless one
// for the same reason was written less than 5 s ago (limit.Limiter.Shed).
func (p *Proxy) shed(reason string, client netip.AddrPort, now time.Time) {
	p.metrics.Shed.With(reason).Inc()
	p.limits.Shed(reason, client, now)
}

// admit admits a connection just accepted, or sheds it: closed at once
// with a reset (nothing of it is read), counted and logged. A host
// process's connection (from loopback) is counted for its cgroup after the
// lookup (admitCgroup) when OriginalDst tells cgroups.
func (p *Proxy) admit(c *client.Conn) bool {
	c.LimitKey = limit.Key{Addr: c.Client.Addr()}
	if _, byCgroup := p.cfg.OriginalDst.(OriginalDstCgroup); byCgroup && c.LimitKey.Addr.IsLoopback() && !c.Gateway {
		c.LimitKey = limit.Key{}
	}
	reason := p.limits.Admit(c.LimitKey, c.Start)
	if reason == "" {
		return true
	}
	p.shedConn(c, reason)
	return false
}

// admitCgroup counts a host process's connection for its cgroup (for its
// address when the cgroup is unknown, 0); false: it was shed.
func (p *Proxy) admitCgroup(c *client.Conn, cgroup uint64) bool {
	key := limit.Key{Cgroup: cgroup}
	if cgroup == 0 {
		key = limit.Key{Addr: c.Client.Addr()}
	}
	if reason := p.limits.AdmitClient(key, time.Now()); reason != "" {
		p.shedConn(c, reason)
		return false
	}
	c.LimitKey = key
	return true
}

func (p *Proxy) shedConn(c *client.Conn, reason string) {
	p.shed(reason, c.Client, time.Now()) // counted before the client can see it
	if tc, ok := c.NC.(*net.TCPConn); ok {
		tc.SetLinger(0) // RST: no FIN handshake nor TIME_WAIT kept for a shed connection
	}
	c.NC.Close()
}

// temporaryAcceptError reports whether Accept may succeed again after a
// pause, as net/http's Serve retries its "temporary" errors: timeouts; the
// process or the kernel out of fds, buffers or memory; a connection that
// failed before it was accepted (accept(2): Linux passes pending network
// errors of the new socket on, "treat them like EAGAIN by retrying"); a
// firewall refusing one. Anything else (the listener closed) ends Serve.
func temporaryAcceptError(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return false
	}
	switch errno {
	case syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
		syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EINTR, syscall.EAGAIN, syscall.EPERM,
		syscall.ENETDOWN, syscall.EPROTO, syscall.ENOPROTOOPT, syscall.EHOSTDOWN, syscall.ENONET,
		syscall.EHOSTUNREACH, syscall.EOPNOTSUPP, syscall.ENETUNREACH:
		return true
	}
	return false
}
