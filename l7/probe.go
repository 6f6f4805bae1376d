package l7

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"syscall"
	"time"
	"unsafe"

	"github.com/egressd/egressd/l7/internal/body"
	"github.com/egressd/egressd/l7/internal/dialer"

	"golang.org/x/sys/unix"
)

// usable reports whether a connection taken from the pool may carry a
// request: nothing arrived on it while it was idle. An upstream that closed
// it (EOF, reset), answered 408 before closing, or wrote anything else a
// client never asked for (the rest of a HEAD response sent with a body)
// must not have those bytes read as the next client's response. This is
// the check net/http's persistConn does with a background read while
// idle, done instead on every reuse: one non-blocking MSG_PEEK on the
// socket (plain TCP), or a TLS read with an expired deadline first (TLS:
// records already read into the TLS layer) — a record there or in the
// socket must be a session ticket (TLS 1.3 sends them after the
// handshake), never application data.
func (uc *upConn) usable() bool {
	if uc.br.Buffered() > 0 {
		return false // never pooled so; checked for what came through br
	}
	tc, isTLS := uc.nc.(*tls.Conn)
	if uc.peeker == nil {
		raw := uc.nc
		if isTLS {
			raw = tc.NetConn()
		}
		uc.peeker = newSocketPeeker(raw)
	}
	if !isTLS {
		return uc.peeker.peek() == peekNothing
	}
	waiting := uc.peeker.peek() // first: the probes below move the deadline
	if waiting == peekClosed {
		return false
	}
	uc.rdl = body.Deadline{} // unknown from here on: the next setRead sets it
	if !tlsQuiet(tc, time.Unix(1, 0)) {
		return false
	}
	if waiting == peekNothing {
		return true
	}
	// Bytes arrived: read them through TLS, briefly (a ticket is small).
	if !tlsQuiet(tc, time.Now().Add(tlsProbeWait)) {
		return false
	}
	tc.SetReadDeadline(time.Time{})
	return uc.peeker.peek() == peekNothing
}

// tlsProbeWait bounds the read of records waiting on an idle TLS connection.
const tlsProbeWait = 5 * time.Millisecond

// tlsQuiet reads from tc until deadline and reports whether that yielded
// no application data and no error but the deadline's. With a deadline in
// the past it only processes the records tc has already read.
func tlsQuiet(tc *tls.Conn, deadline time.Time) bool {
	tc.SetReadDeadline(deadline)
	n, err := tc.Read(make([]byte, 1))
	return n == 0 && isTimeout(err)
}

type peeked int

const (
	peekNothing peeked = iota // no byte waiting, not closed
	peekData                  // bytes waiting
	peekClosed                // end of stream or error
)

// socketPeeker looks at one socket's receive queue without blocking or
// consuming. It is built once per upstream connection (lazily, on its first
// reuse), so that the check of every later reuse allocates nothing.
type socketPeeker struct {
	rc  syscall.RawConn     // nil: a connection it cannot look into
	pre *dialer.PrereadConn // a tunnel through the egress proxy: its buffer first
	fn  func(fd uintptr) bool
	res peeked
	b   [1]byte
}

func newSocketPeeker(nc net.Conn) *socketPeeker {
	sp := new(socketPeeker)
	if pc, ok := nc.(*dialer.PrereadConn); ok {
		sp.pre, nc = pc, pc.Conn
	}
	if sc, ok := nc.(syscall.Conn); ok {
		sp.rc, _ = sc.SyscallConn()
	}
	sp.fn = func(fd uintptr) bool {
		// recvfrom(2) without an address: unix.Recvfrom allocates one.
		n, _, err := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&sp.b[0])), 1,
			unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
		switch {
		case err == unix.EAGAIN || err == unix.EINTR:
			sp.res = peekNothing
		case err != 0, n == 0:
			sp.res = peekClosed // reset or end of stream
		default:
			sp.res = peekData
		}
		return true
	}
	return sp
}

// peek reports what waits on the socket; one it cannot look into counts as
// having nothing waiting.
func (sp *socketPeeker) peek() peeked {
	if sp.pre != nil && sp.pre.Buffered() > 0 {
		return peekData
	}
	if sp.rc == nil {
		return peekNothing
	}
	if err := sp.rc.Read(sp.fn); err != nil {
		return peekClosed
	}
	return sp.res
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}
