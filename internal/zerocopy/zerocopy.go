// Package zerocopy moves bytes from one TCP socket to another through a pipe
// with splice(2), so that a message body never passes through user space.
//
// It is the lower half of what Go's net.TCPConn.ReadFrom does for two TCP
// sockets, with the two steps (socket → pipe, pipe → socket) apart: a caller
// sets each side's deadline before the step that may wait on it, so a stall
// on either side is bounded as it is for read and write calls, and a timeout
// says which side stalled. (TCPConn.ReadFrom moves up to 1 MiB per step under
// deadlines set once for the whole copy, and drops what is left in its pipe
// when the destination times out.)
package zerocopy

import (
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// pipeSize is the pipe's capacity asked for (Go's own splice uses 1 MiB, the
// default /proc/sys/fs/pipe-max-size); the kernel may grant less.
const pipeSize = 1 << 20

// A Pipe carries bytes from a source socket to a destination socket. It is
// not safe for concurrent use.
type Pipe struct {
	r, w int // pipe ends
	size int // capacity
	n    int // bytes in the pipe

	// The current step's arguments and results, and the steps as method
	// values (made once: a RawConn callback that is a closure allocates).
	max, moved      int
	serr            error
	fillFn, drainFn func(uintptr) bool
}

// New makes a pipe. Close it when done.
func New() (*Pipe, error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, os.NewSyscallError("pipe2", err)
	}
	p := &Pipe{r: fds[0], w: fds[1], size: 64 << 10}
	p.fillFn, p.drainFn = p.fill, p.drain
	if got, err := unix.FcntlInt(uintptr(p.w), unix.F_SETPIPE_SZ, pipeSize); err == nil && got > 0 {
		p.size = got
	} else if got, err := unix.FcntlInt(uintptr(p.w), unix.F_GETPIPE_SZ, 0); err == nil && got > 0 {
		p.size = got
	}
	return p, nil
}

// Close closes the pipe; bytes still in it are lost.
func (p *Pipe) Close() {
	unix.Close(p.r)
	unix.Close(p.w)
	p.n = 0
}

// Size is the most one Fill moves.
func (p *Pipe) Size() int { return p.size }

// Buffered is the number of bytes in the pipe (moved in, not yet out).
func (p *Pipe) Buffered() int { return p.n }

// Sockets returns the raw connections of src and dst when both are TCP
// sockets (not TLS, not a wrapper with buffered bytes of its own), the only
// pair this package moves between.
func Sockets(src, dst net.Conn) (s, d syscall.RawConn, ok bool) {
	st, ok1 := src.(*net.TCPConn)
	dt, ok2 := dst.(*net.TCPConn)
	if !ok1 || !ok2 {
		return nil, nil, false
	}
	s, err1 := st.SyscallConn()
	d, err2 := dt.SyscallConn()
	if err1 != nil || err2 != nil {
		return nil, nil, false
	}
	return s, d, true
}

// Fill moves up to max bytes (at most Size) from src into the empty pipe,
// waiting under src's read deadline while nothing is there to read. It
// returns 0 and nil at the end of src's stream.
func (p *Pipe) Fill(src syscall.RawConn, max int) (int, error) {
	p.max = min(max, p.size-p.n)
	return p.splice(src, false)
}

// splice runs Fill's step (src.Read) or Drain's (dst.Write) on rc's fd and
// names a failure as the read or write it was.
func (p *Pipe) splice(rc syscall.RawConn, write bool) (int, error) {
	p.moved, p.serr = 0, nil
	var err error
	op := "read"
	if write {
		op, err = "write", rc.Write(p.drainFn)
	} else {
		err = rc.Read(p.fillFn)
	}
	if err == nil && p.serr != nil {
		err = os.NewSyscallError("splice", p.serr)
	}
	if err != nil {
		return p.moved, &net.OpError{Op: op, Net: "tcp", Err: unwrapOp(err)}
	}
	return p.moved, nil
}

// fill is Fill's step on the socket's fd (a method value made once, so
// that a step allocates nothing): false waits for the socket to be readable.
func (p *Pipe) fill(fd uintptr) bool {
	for {
		n, err := unix.Splice(int(fd), nil, p.w, nil, p.max, unix.SPLICE_F_NONBLOCK|unix.SPLICE_F_MOVE)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return false
		case err != nil:
			p.serr = err
		default:
			p.n += int(n)
			p.moved = int(n)
		}
		return true
	}
}

// Drain moves everything in the pipe to dst, waiting under dst's write
// deadline while dst's buffer is full. On error the rest stays in the pipe.
func (p *Pipe) Drain(dst syscall.RawConn) (int, error) {
	return p.splice(dst, true)
}

// drain is Drain's step on the socket's fd: false waits for it to be
// writable.
func (p *Pipe) drain(fd uintptr) bool {
	for p.n > 0 {
		n, err := unix.Splice(p.r, nil, int(fd), nil, p.n, unix.SPLICE_F_NONBLOCK|unix.SPLICE_F_MOVE)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return false
		case err != nil:
			p.serr = err
			return true
		}
		p.n -= int(n)
		p.moved += int(n)
	}
	return true
}

// unwrapOp strips the RawConn's own OpError ("raw-read"), keeping its cause
// (os.ErrDeadlineExceeded, net.ErrClosed, a syscall error), so that errors
// from here read as those of Read and Write.
func unwrapOp(err error) error {
	if oe, ok := err.(*net.OpError); ok {
		return oe.Err
	}
	return err
}
