package l7

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"syscall"
	"time"

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
	if !isTLS {
		return peekSocket(uc.nc) == peekNothing
	}
	uc.rdl = deadline{} // unknown from here on: the next setRead sets it
	if !tlsQuiet(tc, time.Unix(1, 0)) {
		return false
	}
	switch peekSocket(tc.NetConn()) {
	case peekNothing:
		return true
	case peekClosed:
		return false
	}
	// Bytes arrived: read them through TLS, briefly (a ticket is small).
	return tlsQuiet(tc, time.Now().Add(tlsProbeWait)) && peekSocket(tc.NetConn()) == peekNothing
}

// tlsProbeWait bounds the read of records waiting on an idle TLS connection.
const tlsProbeWait = 5 * time.Millisecond

// tlsQuiet reads from tc until deadline and reports whether that yielded
// no application data and no error but the deadline's. With a deadline in
// the past it only processes the records tc has already read.
func tlsQuiet(tc *tls.Conn, deadline time.Time) bool {
	tc.SetReadDeadline(deadline)
	var b [1]byte
	n, err := tc.Read(b[:])
	return n == 0 && isTimeout(err)
}

type peeked int

const (
	peekNothing peeked = iota // no byte waiting, not closed
	peekData                  // bytes waiting
	peekClosed                // end of stream or error
)

// peekSocket looks at nc's receive queue without blocking or consuming.
// A connection it cannot look into counts as having nothing waiting.
func peekSocket(nc net.Conn) peeked {
	if pc, ok := nc.(*prereadConn); ok { // a tunnel through the egress proxy
		if pc.r.Buffered() > 0 {
			return peekData
		}
		nc = pc.Conn
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return peekNothing
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return peekClosed
	}
	res := peekNothing
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		switch {
		case err == unix.EAGAIN || err == unix.EINTR:
		case err != nil, n == 0:
			res = peekClosed // reset or end of stream
		default:
			res = peekData
		}
		return true
	})
	if err != nil {
		return peekClosed
	}
	return res
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}
