package http1

import (
	"io"
	"net"
	"syscall"
)

// A headWriter is what the buffered writer of a plain-TCP upstream
// connection writes to. Go reads a socket by calling read(2) first and,
// when nothing is there yet (EAGAIN), parking until the poller reports it
// readable; the answer to a request just written is almost never there
// yet, so the first read of an exchange was a wasted system call — as many
// as the reuse check (probe.go) added. For a request without a body the
// head's write is done inside a RawConn.Read step, which then waits for
// the poller: the poller's readiness is reset when RawConn.Read begins,
// before the head leaves, so the answer's arrival cannot be missed (a
// wait begun after the write could miss an answer that came first). When
// the wait returns, the answer's first bytes are there and the buffered
// reader's first read finds them. The wait is under the read deadline the
// exchange set (ResponseTimeout) and ends when the connection is closed
// (a client that left); either then shows in that first read.
type headWriter struct {
	nc    net.Conn
	rc    syscall.RawConn
	armed bool // the next Write writes the whole head, then waits
	// Within one Write: the bytes, how many left, the step's state.
	p      []byte
	n      int
	err    error
	waited bool
	fn     func(fd uintptr) bool // step, made once
}

// newUpstreamWriter returns the writer under an upstream connection's
// buffered writer: a headWriter for a plain TCP socket, nc otherwise (TLS,
// tunnels through the egress proxy).
func newUpstreamWriter(nc net.Conn) (io.Writer, *headWriter) {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nc, nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nc, nil
	}
	w := &headWriter{nc: nc, rc: rc}
	w.fn = w.step
	return w, w
}

// flushHead flushes uc.bw, which holds the rest of a request head (no
// body follows): through uc.hw, waiting for the answer after the write,
// on a reused connection. Its reuse check (probe.go) has just found the
// socket empty. Not on a new one: an upstream that speaks first (a banner,
// an error) would have its bytes there before the wait began, and the
// wait would sit until the response timeout instead of reading them.
func flushHead(uc *upConn) error {
	hw := uc.hw
	if hw == nil || !uc.Reused {
		return uc.BW.Flush()
	}
	hw.armed = true
	err := uc.BW.Flush()
	hw.armed = false
	return err
}

func (w *headWriter) Write(p []byte) (int, error) {
	if !w.armed || len(p) == 0 {
		return w.nc.Write(p)
	}
	w.armed = false
	w.p, w.n, w.err, w.waited = p, 0, nil, false
	// An error here is the read deadline's or a close: the first read
	// of the answer meets it again.
	_ = w.rc.Read(w.fn)
	n, err := w.n, w.err
	w.p = nil
	if err == nil && n < len(p) { // a short write: the rest the usual way
		var m int
		m, err = w.nc.Write(p[n:])
		n += m
	}
	return n, err
}

// step is the RawConn.Read step of an armed Write: first write the head
// (non-blocking) and wait, unless it did not all go; then done.
func (w *headWriter) step(fd uintptr) bool {
	if w.waited {
		return true
	}
	w.waited = true
	for w.n < len(w.p) {
		n, err := syscall.Write(int(fd), w.p[w.n:])
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			return true // the send buffer is full: finish in Write
		}
		if err != nil {
			w.err = &net.OpError{Op: "write", Net: "tcp", Source: w.nc.LocalAddr(), Addr: w.nc.RemoteAddr(), Err: err}
			return true
		}
		w.n += n
	}
	return false // all written: wait for the answer
}
