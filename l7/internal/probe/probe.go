// Package probe looks at a connection without consuming anything: whether
// bytes, an end of stream or a reset wait on its socket (one non-blocking
// MSG_PEEK, allocation-free after the first), whether a TLS connection
// holds application data among the records already read, and — Wait — a
// wait until something is there that holds no read buffer. l7 runs Peek on
// every reuse of a pooled upstream connection (l7/probe.go decides what
// the answers mean) and Wait on client connections that have sent nothing
// yet or are idle between requests.
//
// Why a package of its own: it is a system-call level check, the same for
// any connection, with nothing of the pool or of HTTP in it.
//
// Files: probe.go (Socket: Peek, Wait; TLSQuiet).
package probe

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/egressd/egressd/l7/internal/dialer"
)

// TLSWait bounds the read of records waiting on an idle TLS connection.
const TLSWait = 5 * time.Millisecond

// TLSQuiet reads from tc until deadline and reports whether that yielded
// no application data and no error but the deadline's. With a deadline in
// the past it only processes the records tc has already read.
func TLSQuiet(tc *tls.Conn, deadline time.Time) bool {
	tc.SetReadDeadline(deadline)
	n, err := tc.Read(make([]byte, 1))
	return n == 0 && isTimeout(err)
}

// Peeked is what waits on a socket.
type Peeked int

const (
	Nothing Peeked = iota // no byte waiting, not closed
	Data                  // bytes waiting
	Closed                // end of stream or error
)

// Socket looks at one socket's receive queue without blocking or
// consuming. It is built once per upstream connection (lazily, on its first
// reuse), so that the check of every later reuse allocates nothing.
type Socket struct {
	rc  syscall.RawConn     // nil: a connection it cannot look into
	pre *dialer.PrereadConn // a tunnel through the egress proxy: its buffer first
	fn  func(fd uintptr) bool
	res Peeked
	b   [1]byte
	// Within Wait: the step waits for readability when nothing is there,
	// and after the wake-up reports at once.
	waiting, waited bool
}

// NewSocket returns the Socket of nc (a tunnel through the egress proxy:
// its buffer, then its socket).
func NewSocket(nc net.Conn) *Socket {
	sp := new(Socket)
	if pc, ok := nc.(*dialer.PrereadConn); ok {
		sp.pre, nc = pc, pc.Conn
	}
	if sc, ok := nc.(syscall.Conn); ok {
		sp.rc, _ = sc.SyscallConn()
	}
	sp.fn = func(fd uintptr) bool {
		if sp.waited {
			// Woken by the poller (Wait): bytes or the end are there; a
			// spurious wake-up only makes the read that follows wait.
			sp.res = Data
			return true
		}
		// recvfrom(2) without an address: unix.Recvfrom allocates one.
		n, _, err := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&sp.b[0])), 1,
			unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
		switch {
		case err == unix.EAGAIN || err == unix.EINTR:
			sp.res = Nothing
			if sp.waiting {
				sp.waited = true
				return false // wait for readability
			}
		case err != 0, n == 0:
			sp.res = Closed // reset or end of stream
		default:
			sp.res = Data
		}
		return true
	}
	return sp
}

// Peek reports what waits on the socket; one it cannot look into counts as
// having nothing waiting.
func (sp *Socket) Peek() Peeked {
	if sp.pre != nil && sp.pre.Buffered() > 0 {
		return Data
	}
	if sp.rc == nil {
		return Nothing
	}
	if err := sp.rc.Read(sp.fn); err != nil {
		return Closed
	}
	return sp.res
}

// Wait blocks until bytes, an end of stream or an error wait on the
// socket, consuming nothing and holding no buffer; an error is the read
// deadline's or a close. The poller forgets an earlier readiness when the
// wait begins, so the socket is asked first (MSG_PEEK) and the poller
// waited on only when it has nothing. A socket it cannot look into returns
// at once (the buffered read that follows waits instead).
func (sp *Socket) Wait() error {
	if sp.rc == nil || sp.pre != nil && sp.pre.Buffered() > 0 {
		return nil
	}
	sp.waiting, sp.waited = true, false
	err := sp.rc.Read(sp.fn)
	sp.waiting, sp.waited = false, false
	return err
}

// CanWait reports whether Wait waits on a socket (false: it returns at
// once, and the caller should block in its read instead).
func (sp *Socket) CanWait() bool { return sp.rc != nil }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}
