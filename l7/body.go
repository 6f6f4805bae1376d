package l7

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/egressd/egressd/internal/zerocopy"
	"github.com/egressd/egressd/l7/internal/h1"
)

// A pump moves one message body from src to dst. Before every read that
// would block it flushes dst (so streams and unknown lengths reach the other
// side as they come) and sets src's read deadline and dst's write deadline
// (the longest stall either side may cause). A nil dst discards.
//
// Bulk goes around the buffers (direct): once both are empty and at least
// directMin bytes of a known length are left (or directMin bytes of an
// unknown one have passed), the rest moves socket to socket with splice(2)
// when both sides are plain TCP (zerocopy), else in reads and writes of
// bulkBufSize (TLS on a side). The same deadlines bound every step, and
// every byte still passes through the pump's count and limit.
type pump struct {
	dst      *bufio.Writer
	dstConn  writeDeadliner // the connection under dst; nil with dst
	dstDL    *deadline      // dstConn's write deadline; nil with dst
	src      *bufio.Reader
	srcConn  deadliner // the connection under src
	srcDL    *deadline // srcConn's read deadline
	stall    time.Duration
	maxLines int   // size limit of chunk lines and trailer section
	limit    int64 // most body bytes accepted; 0: no limit
	n        int64 // body bytes moved
	// stop, when set, ends the pump before its next wait once true (an
	// upload being cut: upload.go); it is read after the deadlines are set,
	// so a deadline set to cut it cannot be moved on unnoticed.
	stop *atomic.Bool
	pipe *zerocopy.Pipe // direct's pipe, made on first use; closed by release
	// rawSrc, rawDst: the sockets direct splices between, found on first use.
	rawSrc, rawDst syscall.RawConn
}

// directMin: a body with at least this much left past the buffers moves
// around them (pump.direct). A variable for BenchmarkBulk's comparison.
var directMin int64 = 16 << 10

// bulkBufSize: the buffer of a direct move that cannot splice.
const bulkBufSize = 64 << 10

var bulkBufs = sync.Pool{New: func() any { b := make([]byte, bulkBufSize); return &b }}

// directMoved counts the bytes direct moved, by path (tests read it to know
// which path a body took).
var directMoved struct{ spliced, copied atomic.Int64 }

// errPumpStopped: the pump's stop flag was set.
var errPumpStopped = errors.New("body transfer stopped")

func (p *pump) stopped() bool { return p.stop != nil && p.stop.Load() }

// release closes direct's pipe, if any.
func (p *pump) release() {
	if p.pipe != nil {
		p.pipe.Close()
		p.pipe = nil
	}
}

// deadliner is the part of net.Conn a pump needs.
type deadliner interface{ SetReadDeadline(time.Time) error }

type writeDeadliner interface{ SetWriteDeadline(time.Time) error }

// copyError tells which side of a pump failed.
type copyError struct {
	write bool // the destination failed; else the source
	err   error
}

func (e *copyError) Error() string { return e.err.Error() }
func (e *copyError) Unwrap() error { return e.err }

// errBadChunk reports invalid chunked framing.
var errBadChunk = errors.New("invalid chunked encoding")

// errBodyTooLarge: a body over pump.limit.
var errBodyTooLarge = errors.New("body too large")

func (p *pump) fill() error {
	if p.src.Buffered() > 0 {
		return nil
	}
	now := time.Now()
	if p.dst != nil {
		p.dstDL.setWrite(p.dstConn, now, p.stall)
		if p.stopped() {
			return &copyError{write: true, err: errPumpStopped}
		}
		if err := p.dst.Flush(); err != nil {
			return &copyError{write: true, err: err}
		}
	}
	p.srcDL.setRead(p.srcConn, now, p.stall)
	if p.stopped() {
		return &copyError{err: errPumpStopped}
	}
	if _, err := p.src.Peek(1); err != nil {
		return &copyError{err: err}
	}
	return nil
}

func (p *pump) write(b []byte) error {
	if p.dst == nil {
		return nil
	}
	if _, err := p.dst.Write(b); err != nil {
		return &copyError{write: true, err: err}
	}
	return nil
}

func (p *pump) writeString(s string) error {
	if p.dst == nil {
		return nil
	}
	if _, err := p.dst.WriteString(s); err != nil {
		return &copyError{write: true, err: err}
	}
	return nil
}

// copyN moves exactly n body bytes.
func (p *pump) copyN(n int64) error {
	defer p.release()
	return p.moveN(n)
}

func (p *pump) moveN(n int64) error {
	for n > 0 {
		if n >= directMin && p.dst != nil && p.src.Buffered() == 0 {
			if handled, err := p.direct(n); handled {
				return err
			}
		}
		if err := p.fill(); err != nil {
			return err
		}
		chunk, _ := p.src.Peek(int(min(int64(p.src.Buffered()), n)))
		if err := p.write(chunk); err != nil {
			return err
		}
		p.src.Discard(len(chunk))
		n -= int64(len(chunk))
		p.n += int64(len(chunk))
		if p.limit > 0 && p.n > p.limit {
			return &copyError{err: errBodyTooLarge}
		}
	}
	return nil
}

// copyUntilEOF moves bytes until src ends (a response without length).
func (p *pump) copyUntilEOF() error {
	defer p.release()
	cleanEnd := func(err error) error {
		var ce *copyError
		if errors.As(err, &ce) && !ce.write && isEOF(ce.err) {
			return nil
		}
		return err
	}
	for {
		if p.n >= directMin && p.dst != nil && p.src.Buffered() == 0 {
			if handled, err := p.direct(-1); handled {
				return cleanEnd(err)
			}
		}
		if err := p.fill(); err != nil {
			return cleanEnd(err)
		}
		chunk, _ := p.src.Peek(p.src.Buffered())
		if err := p.write(chunk); err != nil {
			return err
		}
		p.src.Discard(len(chunk))
		p.n += int64(len(chunk))
	}
}

// copyChunked validates a chunked body and moves it re-framed (reframe) or
// decoded (for HTTP/1.0 clients), trailers included when re-framed.
func (p *pump) copyChunked(reframe bool) error {
	defer p.release()
	var line [32]byte
	for {
		size, err := p.chunkSize()
		if err != nil {
			return err
		}
		if size == 0 {
			if reframe {
				if err := p.writeString("0\r\n"); err != nil {
					return err
				}
			}
			return p.trailers(reframe)
		}
		if reframe {
			b := strconv.AppendUint(line[:0], uint64(size), 16)
			if err := p.write(append(b, '\r', '\n')); err != nil {
				return err
			}
		}
		if err := p.moveN(size); err != nil {
			return err
		}
		if err := p.expectCRLF(); err != nil {
			return err
		}
		if reframe {
			if err := p.writeString("\r\n"); err != nil {
				return err
			}
		}
	}
}

// direct moves n bytes (n < 0: until src ends, reported as a copyError of
// io.EOF) from srcConn to dstConn, with src's buffer empty; dst is flushed
// first. handled is false when a side is not a net.Conn (nothing was done).
func (p *pump) direct(n int64) (handled bool, err error) {
	src, ok1 := p.srcConn.(net.Conn)
	dst, ok2 := p.dstConn.(net.Conn)
	if !ok1 || !ok2 {
		return false, nil
	}
	p.dstDL.setWrite(p.dstConn, time.Now(), p.stall)
	if p.stopped() {
		return true, &copyError{write: true, err: errPumpStopped}
	}
	if err := p.dst.Flush(); err != nil {
		return true, &copyError{write: true, err: err}
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
func (p *pump) spliceN(src, dst syscall.RawConn, n int64) error {
	for n != 0 {
		max := p.pipe.Size()
		if n > 0 && int64(max) > n {
			max = int(n)
		}
		p.srcDL.setRead(p.srcConn, time.Now(), p.stall)
		if p.stopped() {
			return &copyError{err: errPumpStopped}
		}
		k, err := p.pipe.Fill(src, max)
		if err != nil {
			return &copyError{err: err}
		}
		if k == 0 {
			return &copyError{err: io.EOF}
		}
		p.dstDL.setWrite(p.dstConn, time.Now(), p.stall)
		if p.stopped() {
			return &copyError{write: true, err: errPumpStopped}
		}
		w, err := p.pipe.Drain(dst)
		p.n += int64(w)
		directMoved.spliced.Add(int64(w))
		if n > 0 {
			n -= int64(w)
		}
		if err != nil {
			return &copyError{write: true, err: err}
		}
	}
	return nil
}

// bulkN is direct without splice: reads and writes of up to bulkBufSize.
func (p *pump) bulkN(src, dst net.Conn, n int64) error {
	bp := bulkBufs.Get().(*[]byte)
	defer bulkBufs.Put(bp)
	for n != 0 {
		b := *bp
		if n > 0 && int64(len(b)) > n {
			b = b[:n]
		}
		p.srcDL.setRead(p.srcConn, time.Now(), p.stall)
		if p.stopped() {
			return &copyError{err: errPumpStopped}
		}
		k, rerr := src.Read(b)
		if k > 0 {
			p.dstDL.setWrite(p.dstConn, time.Now(), p.stall)
			if p.stopped() {
				return &copyError{write: true, err: errPumpStopped}
			}
			_, werr := dst.Write(b[:k])
			p.n += int64(k)
			directMoved.copied.Add(int64(k))
			if n > 0 {
				n -= int64(k)
			}
			if werr != nil {
				return &copyError{write: true, err: werr}
			}
		}
		if rerr != nil && (n != 0 || rerr != io.EOF) {
			return &copyError{err: rerr}
		}
	}
	return nil
}

// readLine returns the next CRLF-terminated line without CRLF; the slice is
// valid until the next read. Lines over maxLines are invalid.
func (p *pump) readLine() ([]byte, error) {
	if err := p.fill(); err != nil {
		return nil, err
	}
	line, err := p.src.ReadSlice('\n')
	if err == bufio.ErrBufferFull || err == nil && len(line) > p.maxLines {
		return nil, &copyError{err: errBadChunk}
	}
	if err != nil {
		return nil, &copyError{err: err}
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, &copyError{err: errBadChunk}
	}
	return line[:len(line)-2], nil
}

// chunkSize reads a chunk-size line: hex digits, then optional extensions.
func (p *pump) chunkSize() (int64, error) {
	line, err := p.readLine()
	if err != nil {
		return 0, err
	}
	var size int64
	i := 0
	for ; i < len(line) && h1.IsHex(line[i]); i++ {
		if i >= 15 {
			return 0, &copyError{err: errBadChunk}
		}
		size = size<<4 | int64(unhex(line[i]))
	}
	if i == 0 {
		return 0, &copyError{err: errBadChunk}
	}
	for _, c := range line[i:] { // chunk-ext: BWS ";" name["=" value]
		if c < ' ' && c != '\t' || c == 0x7f {
			return 0, &copyError{err: errBadChunk}
		}
	}
	if rest := h1.TrimOWS(line[i:]); len(rest) > 0 && rest[0] != ';' {
		return 0, &copyError{err: errBadChunk}
	}
	return size, nil
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

func (p *pump) expectCRLF() error {
	line, err := p.readLine()
	if err != nil {
		return err
	}
	if len(line) != 0 {
		return &copyError{err: errBadChunk}
	}
	return nil
}

// trailers moves the trailer section (after the last chunk) up to and
// including its empty line, checking each field line.
func (p *pump) trailers(forward bool) error {
	total := 0
	var h h1.Head
	for {
		line, err := p.readLine()
		if err != nil {
			return err
		}
		if total += len(line) + 2; total > p.maxLines {
			return &copyError{err: errBadChunk}
		}
		if len(line) > 0 {
			h.Buf = append(h.Buf[:0], line...)
			if _, err := h.ParseField(h1.Span{Lo: 0, Hi: int32(len(line))}); err != nil {
				return &copyError{err: errBadChunk}
			}
		}
		if forward {
			if err := p.write(line[:len(line)+2]); err != nil {
				return err
			}
		}
		if len(line) == 0 {
			return nil
		}
	}
}

func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)
}
