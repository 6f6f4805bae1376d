package body

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strconv"
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
type Pump struct {
	Dst      *bufio.Writer
	DstConn  writeDeadliner // the connection under dst; nil with dst
	DstDL    *Deadline      // dstConn's write deadline; nil with dst
	Src      *bufio.Reader
	SrcConn  deadliner // the connection under src
	SrcDL    *Deadline // srcConn's read deadline
	Stall    time.Duration
	MaxLines int   // size limit of chunk lines and trailer section
	Limit    int64 // most body bytes accepted; 0: no limit
	N        int64 // body bytes moved
	// stop, when set, ends the pump before its next wait once true (an
	// upload being cut: upload.go); it is read after the deadlines are set,
	// so a deadline set to cut it cannot be moved on unnoticed.
	Stop *atomic.Bool
	pipe *zerocopy.Pipe // direct's pipe, made on first use; closed by release
	// rawSrc, rawDst: the sockets direct splices between, found on first use.
	rawSrc, rawDst syscall.RawConn
}

// errPumpStopped: the pump's stop flag was set.
var errPumpStopped = errors.New("body transfer stopped")

func (p *Pump) stopped() bool { return p.Stop != nil && p.Stop.Load() }

// release closes direct's pipe, if any.
func (p *Pump) release() {
	if p.pipe != nil {
		p.pipe.Close()
		p.pipe = nil
	}
}

// deadliner is the part of net.Conn a pump needs.
type deadliner interface{ SetReadDeadline(time.Time) error }

type writeDeadliner interface{ SetWriteDeadline(time.Time) error }

// CopyError tells which side of a pump failed.
type CopyError struct {
	Write bool // the destination failed; else the source
	Err   error
}

func (e *CopyError) Error() string { return e.Err.Error() }
func (e *CopyError) Unwrap() error { return e.Err }

// ErrBadChunk reports invalid chunked framing.
var ErrBadChunk = errors.New("invalid chunked encoding")

// errBodyTooLarge: a body over pump.limit.
var errBodyTooLarge = errors.New("body too large")

func (p *Pump) fill() error {
	if p.Src.Buffered() > 0 {
		return nil
	}
	now := time.Now()
	if p.Dst != nil {
		p.DstDL.SetWrite(p.DstConn, now, p.Stall)
		if p.stopped() {
			return &CopyError{Write: true, Err: errPumpStopped}
		}
		if err := p.Dst.Flush(); err != nil {
			return &CopyError{Write: true, Err: err}
		}
	}
	p.SrcDL.SetRead(p.SrcConn, now, p.Stall)
	if p.stopped() {
		return &CopyError{Err: errPumpStopped}
	}
	if _, err := p.Src.Peek(1); err != nil {
		return &CopyError{Err: err}
	}
	return nil
}

func (p *Pump) write(b []byte) error {
	if p.Dst == nil {
		return nil
	}
	if _, err := p.Dst.Write(b); err != nil {
		return &CopyError{Write: true, Err: err}
	}
	return nil
}

func (p *Pump) writeString(s string) error {
	if p.Dst == nil {
		return nil
	}
	if _, err := p.Dst.WriteString(s); err != nil {
		return &CopyError{Write: true, Err: err}
	}
	return nil
}

// CopyN moves exactly n body bytes.
func (p *Pump) CopyN(n int64) error {
	defer p.release()
	return p.moveN(n)
}

func (p *Pump) moveN(n int64) error {
	for n > 0 {
		if n >= DirectMin && p.Dst != nil && p.Src.Buffered() == 0 {
			if handled, err := p.direct(n); handled {
				return err
			}
		}
		if err := p.fill(); err != nil {
			return err
		}
		chunk, _ := p.Src.Peek(int(min(int64(p.Src.Buffered()), n)))
		if err := p.write(chunk); err != nil {
			return err
		}
		p.Src.Discard(len(chunk))
		n -= int64(len(chunk))
		p.N += int64(len(chunk))
		if p.Limit > 0 && p.N > p.Limit {
			return &CopyError{Err: errBodyTooLarge}
		}
	}
	return nil
}

// CopyUntilEOF moves bytes until src ends (a response without length).
func (p *Pump) CopyUntilEOF() error {
	defer p.release()
	cleanEnd := func(err error) error {
		var ce *CopyError
		if errors.As(err, &ce) && !ce.Write && IsEOF(ce.Err) {
			return nil
		}
		return err
	}
	for {
		if p.N >= DirectMin && p.Dst != nil && p.Src.Buffered() == 0 {
			if handled, err := p.direct(-1); handled {
				return cleanEnd(err)
			}
		}
		if err := p.fill(); err != nil {
			return cleanEnd(err)
		}
		chunk, _ := p.Src.Peek(p.Src.Buffered())
		if err := p.write(chunk); err != nil {
			return err
		}
		p.Src.Discard(len(chunk))
		p.N += int64(len(chunk))
	}
}

// CopyChunked validates a chunked body and moves it re-framed (reframe) or
// decoded (for HTTP/1.0 clients), trailers included when re-framed.
func (p *Pump) CopyChunked(reframe bool) error {
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

// readLine returns the next CRLF-terminated line without CRLF; the slice is
// valid until the next read. Lines over maxLines are invalid.
func (p *Pump) readLine() ([]byte, error) {
	if err := p.fill(); err != nil {
		return nil, err
	}
	line, err := p.Src.ReadSlice('\n')
	if err == bufio.ErrBufferFull || err == nil && len(line) > p.MaxLines {
		return nil, &CopyError{Err: ErrBadChunk}
	}
	if err != nil {
		return nil, &CopyError{Err: err}
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, &CopyError{Err: ErrBadChunk}
	}
	return line[:len(line)-2], nil
}

// chunkSize reads a chunk-size line: hex digits, then optional extensions.
func (p *Pump) chunkSize() (int64, error) {
	line, err := p.readLine()
	if err != nil {
		return 0, err
	}
	var size int64
	i := 0
	for ; i < len(line) && h1.IsHex(line[i]); i++ {
		if i >= 15 {
			return 0, &CopyError{Err: ErrBadChunk}
		}
		size = size<<4 | int64(unhex(line[i]))
	}
	if i == 0 {
		return 0, &CopyError{Err: ErrBadChunk}
	}
	for _, c := range line[i:] { // chunk-ext: BWS ";" name["=" value]
		if c < ' ' && c != '\t' || c == 0x7f {
			return 0, &CopyError{Err: ErrBadChunk}
		}
	}
	if rest := h1.TrimOWS(line[i:]); len(rest) > 0 && rest[0] != ';' {
		return 0, &CopyError{Err: ErrBadChunk}
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

func (p *Pump) expectCRLF() error {
	line, err := p.readLine()
	if err != nil {
		return err
	}
	if len(line) != 0 {
		return &CopyError{Err: ErrBadChunk}
	}
	return nil
}

// trailers moves the trailer section (after the last chunk) up to and
// including its empty line, checking each field line.
func (p *Pump) trailers(forward bool) error {
	total := 0
	var h h1.Head
	for {
		line, err := p.readLine()
		if err != nil {
			return err
		}
		if total += len(line) + 2; total > p.MaxLines {
			return &CopyError{Err: ErrBadChunk}
		}
		if len(line) > 0 {
			h.Buf = append(h.Buf[:0], line...)
			if _, err := h.ParseField(h1.Span{Lo: 0, Hi: int32(len(line))}); err != nil {
				return &CopyError{Err: ErrBadChunk}
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

func IsEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)
}

// RequestBody moves r's body (chunked: validated and re-framed).
func (p *Pump) RequestBody(r *h1.Request) error {
	if r.Chunked {
		return p.CopyChunked(p.Dst != nil)
	}
	return p.CopyN(r.ContentLength)
}
