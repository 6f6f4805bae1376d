package l7

import (
	"crypto/tls"
	"syscall"

	"golang.org/x/sys/unix"
)

// alive reports whether a pooled connection still looks open: one
// non-blocking MSG_PEEK finds no end of stream (and, for plain TCP, no stray
// bytes) waiting. Used before sending a body, which cannot be sent twice.
func (uc *upConn) alive() bool {
	nc, isTLS := uc.nc, false
	if tc, ok := nc.(*tls.Conn); ok {
		nc, isTLS = tc.NetConn(), true // TLS 1.3 session tickets may be waiting: not stray
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := true
	var b [1]byte
	rc.Read(func(fd uintptr) bool {
		n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		switch {
		case err == unix.EAGAIN || err == unix.EINTR:
		case err != nil, n == 0:
			alive = false // reset or end of stream
		case !isTLS:
			alive = false // a response nobody asked for
		}
		return true
	})
	return alive
}
