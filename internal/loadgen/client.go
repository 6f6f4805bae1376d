package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Error kinds reported in Result.Errors.
const (
	ErrDial     = "dial"     // could not connect
	ErrWrite    = "write"    // the request could not be sent
	ErrClosed   = "closed"   // the connection ended before a response started
	ErrRead     = "read"     // the connection failed during a response
	ErrTimeout  = "timeout"  // no complete response within Timeout
	ErrProtocol = "protocol" // the response was not valid HTTP/1.1
)

// worker owns at most one connection and records into its own histogram.
type worker struct {
	r      *runner
	conn   net.Conn
	br     *bufio.Reader
	hist   *hdrhistogram.Histogram
	errs   map[string]int64
	status map[int]int64
}

// do sends one request and reads the whole response. since is the time the
// latency counts from. It returns after at most Timeout.
func (w *worker) do(since time.Time) {
	status, kind := w.roundTrip()
	if kind != "" {
		w.errs[kind]++
		w.r.errs.Add(1)
		w.close()
		return
	}
	us := time.Since(since).Microseconds()
	if us < 1 {
		us = 1
	}
	_ = w.hist.RecordValue(us) // values beyond 60 s saturate; Timeout keeps them far below
	w.status[status]++
	w.r.done.Add(1)
}

// roundTrip returns the status code, or the kind of error.
func (w *worker) roundTrip() (status int, kind string) {
	cfg := &w.r.cfg
	if w.conn == nil {
		if kind := w.dial(); kind != "" {
			return 0, kind
		}
	}
	if err := w.conn.SetDeadline(time.Now().Add(cfg.Timeout)); err != nil {
		return 0, ErrWrite
	}
	if _, err := w.conn.Write(w.r.req); err != nil {
		return 0, errKind(err, ErrWrite)
	}
	status, keep, err := readResponse(w.br)
	if err != nil {
		if errors.Is(err, errNoResponse) {
			return 0, ErrClosed
		}
		if errors.Is(err, errProtocol) {
			return 0, ErrProtocol
		}
		return 0, errKind(err, ErrRead)
	}
	if !keep || cfg.NewConnPerRequest {
		w.close()
	}
	return status, ""
}

func (w *worker) dial() string {
	cfg := &w.r.cfg
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()
	c, err := cfg.Dial(ctx, "tcp", cfg.Target)
	w.r.dials.Add(1)
	if err != nil {
		return errKind(err, ErrDial)
	}
	w.conn = c
	if w.br == nil {
		w.br = bufio.NewReaderSize(c, 16<<10)
	} else {
		w.br.Reset(c)
	}
	return ""
}

func (w *worker) close() {
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
	}
}

func errKind(err error, otherwise string) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ErrTimeout
	}
	return otherwise
}

var (
	errNoResponse = errors.New("connection closed before a response")
	errProtocol   = errors.New("malformed response")
)

// readResponse reads one response (status line, headers, body) and reports
// its status code and whether the connection may be reused.
func readResponse(br *bufio.Reader) (status int, keepAlive bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if len(line) == 0 && (err == io.EOF || errors.Is(err, net.ErrClosed)) {
			return 0, false, errNoResponse
		}
		return 0, false, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, false, errProtocol
	}
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return 0, false, errProtocol
		}
		status = status*10 + int(c-'0')
	}
	if status < 100 {
		return 0, false, errProtocol
	}
	keepAlive = line[7] == '1'
	length, chunked := int64(-1), false
	for {
		h, err := br.ReadSlice('\n')
		if err != nil {
			return 0, false, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			return 0, false, errProtocol
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.ParseInt(string(value), 10, 64); err != nil || length < 0 {
				return 0, false, errProtocol
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			if bytes.EqualFold(value, []byte("close")) {
				keepAlive = false
			}
		}
	}
	switch {
	case chunked:
		err = discardChunked(br)
	case length >= 0:
		_, err = br.Discard(int(length))
	case status == 204 || status == 304 || status/100 == 1:
	default: // body until EOF
		_, err = io.Copy(io.Discard, br)
		keepAlive = false
	}
	return status, keepAlive, err
}

func discardChunked(br *bufio.Reader) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		sz, _, _ := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte(";"))
		n, err := strconv.ParseInt(string(bytes.TrimSpace(sz)), 16, 64)
		if err != nil || n < 0 {
			return errProtocol
		}
		if n == 0 { // trailers until an empty line
			for {
				t, err := br.ReadSlice('\n')
				if err != nil {
					return err
				}
				if len(bytes.TrimRight(t, "\r\n")) == 0 {
					return nil
				}
			}
		}
		if _, err := br.Discard(int(n) + 2); err != nil {
			return err
		}
	}
}
