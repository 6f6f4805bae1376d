// Package probe looks at an idle upstream connection without consuming
// anything: whether bytes, an end of stream or a reset wait on its socket
// (one non-blocking MSG_PEEK, allocation-free after the first), and whether
// a TLS connection holds application data among the records already read.
// l7 runs it on every reuse of a pooled connection (l7/probe.go decides what
// the answers mean).
//
// Why a package of its own: it is a system-call level check, the same for
// any connection, with nothing of the pool or of HTTP in it.
//
// Files: probe.go (Socket, Peek, TLSQuiet).
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
		// recvfrom(2) without an address: unix.Recvfrom allocates one.
		n, _, err := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&sp.b[0])), 1,
			unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
		switch {
		case err == unix.EAGAIN || err == unix.EINTR:
			sp.res = Nothing
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

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}
