package body

// The direct path of a Pump: bulk around the buffers, spliced when both
// sides are plain TCP, else copied in large reads and writes.

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/egressd/egressd/internal/zerocopy"
)

// DirectMin: a body with at least this much left past the buffers moves
// around them (pump.direct). A variable for BenchmarkBulk's comparison.
var DirectMin int64 = 16 << 10

// bulkBufSize: the buffer of a direct move that cannot splice.
const bulkBufSize = 64 << 10

var bulkBufs = sync.Pool{New: func() any { b := make([]byte, bulkBufSize); return &b }}

// DirectMoved counts the bytes direct moved, by path (tests read it to know
// which path a body took).
var DirectMoved struct{ Spliced, Copied atomic.Int64 }

// direct moves n bytes (n < 0: until src ends, reported as a copyError of
// io.EOF) from srcConn to dstConn, with src's buffer empty; dst is flushed
// first. handled is false when a side is not a net.Conn (nothing was done).
func (p *Pump) direct(n int64) (handled bool, err error) {
	src, ok1 := p.SrcConn.(net.Conn)
	dst, ok2 := p.DstConn.(net.Conn)
	if !ok1 || !ok2 {
		return false, nil
	}
	p.DstDL.SetWrite(p.DstConn, time.Now(), p.Stall)
	if p.stopped() {
		return true, &CopyError{Write: true, Err: errPumpStopped}
	}
	if err := p.Dst.Flush(); err != nil {
		return true, &CopyError{Write: true, Err: err}
	}
	if p.rawSrc == nil {
		if rs, rd, ok := zerocopy.Sockets(src, dst); ok {
			p.pipe, _ = zerocopy.New() // out of fds: copy instead
			p.rawSrc, p.rawDst = rs, rd
		}
	}
	if p.pipe != nil {
		return true, p.spliceN(p.rawSrc, p.rawDst, n)
	}
	return true, p.bulkN(src, dst, n)
}

// spliceN is direct through the pipe: socket → pipe under src's read
// deadline, pipe → socket under dst's write deadline.
func (p *Pump) spliceN(src, dst syscall.RawConn, n int64) error {
	for n != 0 {
		max := p.pipe.Size()
		if n > 0 && int64(max) > n {
			max = int(n)
		}
		p.SrcDL.SetRead(p.SrcConn, time.Now(), p.Stall)
		if p.stopped() {
			return &CopyError{Err: errPumpStopped}
		}
		k, err := p.pipe.Fill(src, max)
		if err != nil {
			return &CopyError{Err: err}
		}
		if k == 0 {
			return &CopyError{Err: io.EOF}
		}
		p.DstDL.SetWrite(p.DstConn, time.Now(), p.Stall)
		if p.stopped() {
			return &CopyError{Write: true, Err: errPumpStopped}
		}
		w, err := p.pipe.Drain(dst)
		p.N += int64(w)
		DirectMoved.Spliced.Add(int64(w))
		if n > 0 {
			n -= int64(w)
		}
		if err != nil {
			return &CopyError{Write: true, Err: err}
		}
	}
	return nil
}

// bulkN is direct without splice: reads and writes of up to bulkBufSize.
func (p *Pump) bulkN(src, dst net.Conn, n int64) error {
	bp := bulkBufs.Get().(*[]byte)
	defer bulkBufs.Put(bp)
	for n != 0 {
		b := *bp
		if n > 0 && int64(len(b)) > n {
			b = b[:n]
		}
		p.SrcDL.SetRead(p.SrcConn, time.Now(), p.Stall)
		if p.stopped() {
			return &CopyError{Err: errPumpStopped}
		}
		k, rerr := src.Read(b)
		if k > 0 {
			p.DstDL.SetWrite(p.DstConn, time.Now(), p.Stall)
			if p.stopped() {
				return &CopyError{Write: true, Err: errPumpStopped}
			}
			_, werr := dst.Write(b[:k])
			p.N += int64(k)
			DirectMoved.Copied.Add(int64(k))
			if n > 0 {
				n -= int64(k)
			}
			if werr != nil {
				return &CopyError{Write: true, Err: werr}
			}
		}
		if rerr != nil && (n != 0 || rerr != io.EOF) {
			return &CopyError{Err: rerr}
		}
	}
	return nil
}
