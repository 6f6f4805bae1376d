// Package accesslog reads egressd's access log back: the request lines that
// l7.AccessLog writes, in either of its forms (slog's JSON handler's or its
// text handler's), one Entry per line. It is what `egressd suggest` and
// `egressd explain --log` read.
//
// The access log shares its stream with egressd's other log records (the
// start-up line, warnings), so a Reader skips every well-formed log record
// whose msg is not "request" and counts it (Skipped). Anything else that is
// not a request line — truncated JSON, a line of another program, a request
// line without its port — is a *LineError naming the line; the Reader goes
// on with the next line, so one bad line never hides the rest.
//
// Lines are read up to MaxLine bytes; a longer line is reported as a
// LineError and skipped to its end. A Reader is not safe for concurrent
// use.
package accesslog

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// MaxLine is the longest line a Reader reads (egressd's request lines are
// under 1 KiB; a Host is at most 255 bytes).
const MaxLine = 64 << 10

// Entry is one request line. Fields absent from the line are zero.
type Entry struct {
	Line       int    // 1-based line number in its input
	Time       string // as written
	Client     string // client address:port
	OrigDst    string // original destination address:port
	Host       string // the requested authority, as the client sent it ("" when none: a TLS hello without SNI)
	Port       uint16 // original destination port, the one matched against the rules
	Protocol   string // http/1.1, http/1.0, h2c, grpc, tls-passthrough
	Upstream   string // http, https (TLS originated), tls (passthrough), tunnel (gateway CONNECT); "" when not forwarded
	Rule       string // the rule that allowed it ("" when none)
	Decision   string // allow, deny, invalid, would-deny
	Status     int
	GRPCStatus string
	BytesIn    int64
	BytesOut   int64
	Duration   time.Duration
	Reason     string
	// Namespace and Pod are the client's, on lines that carry them (an
	// agent that knows the pods of its node).
	Namespace, Pod string
}

// LineError is a line that is neither a request line nor another egressd
// log record.
type LineError struct {
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// Reader reads entries from an access log.
type Reader struct {
	br      *bufio.Reader
	line    int
	skipped int
	long    []byte
}

// NewReader returns a Reader of r.
func NewReader(r io.Reader) *Reader { return &Reader{br: bufio.NewReaderSize(r, 16<<10)} }

// Skipped is how many well-formed log records that are not request lines
// were skipped so far.
func (r *Reader) Skipped() int { return r.skipped }

// Next returns the next request line's entry. At the end it returns io.EOF;
// a line that cannot be read as a log record is a *LineError (call Next
// again for the lines after it); a read error of the underlying reader is
// returned as it is.
func (r *Reader) Next() (*Entry, error) {
	for {
		line, err := r.readLine()
		if err != nil {
			return nil, err
		}
		r.line++
		line = bytes.TrimRight(line, "\r")
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if len(line) > MaxLine {
			return nil, &LineError{r.line, fmt.Errorf("longer than %d bytes", MaxLine)}
		}
		e, err := ParseLine(line)
		switch {
		case errors.Is(err, errNotRequest):
			r.skipped++
			continue
		case err != nil:
			return nil, &LineError{r.line, err}
		}
		e.Line = r.line
		return e, nil
	}
}

// readLine returns the next line without its newline; one longer than
// MaxLine comes back as MaxLine+1 bytes, its rest discarded.
func (r *Reader) readLine() ([]byte, error) {
	r.long = r.long[:0]
	for {
		chunk, err := r.br.ReadSlice('\n')
		if len(r.long) <= MaxLine {
			r.long = append(r.long, chunk...)
			if len(r.long) > MaxLine+1 {
				r.long = r.long[:MaxLine+1]
			}
		}
		switch {
		case err == nil:
			return bytes.TrimSuffix(r.long, []byte("\n")), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(r.long) > 0:
			return r.long, nil // a last line without its newline
		default:
			return nil, err
		}
	}
}

// HostName is Host without a port and without an IPv6 address's brackets
// ("api.foo.com:443" → "api.foo.com", "[2001:db8::1]:443" → "2001:db8::1").
func (e *Entry) HostName() string {
	a := e.Host
	if strings.HasPrefix(a, "[") {
		if i := strings.IndexByte(a, ']'); i > 0 {
			return a[1:i]
		}
		return a
	}
	if i := strings.LastIndexByte(a, ':'); i >= 0 && strings.IndexByte(a, ':') == i {
		return a[:i]
	}
	return a
}
