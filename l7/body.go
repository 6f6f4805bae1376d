package l7

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strconv"
	"time"
)

// A pump moves one message body from src to dst. Before every read that
// would block it flushes dst (so streams and unknown lengths reach the other
// side as they come) and sets src's read deadline and dst's write deadline
// (the longest stall either side may cause). A nil dst discards.
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
		if err := p.dst.Flush(); err != nil {
			return &copyError{write: true, err: err}
		}
	}
	p.srcDL.setRead(p.srcConn, now, p.stall)
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
	for n > 0 {
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
	for {
		if err := p.fill(); err != nil {
			var ce *copyError
			if errors.As(err, &ce) && !ce.write && isEOF(ce.err) {
				return nil
			}
			return err
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
		if err := p.copyN(size); err != nil {
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
	for ; i < len(line) && isHex(line[i]); i++ {
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
	if rest := trimOWS(line[i:]); len(rest) > 0 && rest[0] != ';' {
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
	var h head
	for {
		line, err := p.readLine()
		if err != nil {
			return err
		}
		if total += len(line) + 2; total > p.maxLines {
			return &copyError{err: errBadChunk}
		}
		if len(line) > 0 {
			h.buf = append(h.buf[:0], line...)
			if _, err := h.parseField(span{0, int32(len(line))}); err != nil {
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
