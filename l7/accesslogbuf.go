package l7

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// Defaults of AccessLogOptions.
const (
	DefaultAccessLogFlushInterval = 100 * time.Millisecond
	DefaultAccessLogBufferSize    = 32 << 10
)

// AccessLogOptions configures an AccessLog. The zero value writes text.
type AccessLogOptions struct {
	JSON          bool          // lines as slog's JSON handler writes them; false: as its text handler does
	FlushInterval time.Duration // longest time a line waits in the buffer; 0: DefaultAccessLogFlushInterval
	BufferSize    int           // lines are written once this many bytes wait; 0: DefaultAccessLogBufferSize
}

// AccessLog is a slog.Handler for the access log (Config.AccessLog =
// slog.New(al)) that makes it cheap: the proxy's request lines are encoded
// by l7 itself, without allocating, in exactly the form of slog's JSON or
// text handler (same keys, same order, same value forms), and lines reach
// the writer in batches — once BufferSize bytes wait, FlushInterval after
// the oldest waiting line, and on Flush and Close — instead of one write(2)
// per request. Other records (from a Logger.With, say) go through slog's
// own handler into the same buffer.
//
// Lifecycle trap: lines wait in memory. Call Close (or Flush) before the
// process exits, after the proxy has shut down; lines logged after Close
// are written at once, unbuffered, so none is lost. It is safe for
// concurrent use.
type AccessLog struct {
	json     bool
	interval time.Duration
	size     int
	inner    slog.Handler // records not from the proxy

	mu     sync.Mutex
	w      io.Writer
	buf    []byte
	timer  *time.Timer // flushes FlushInterval after the first waiting line
	armed  bool        // timer is running
	closed bool
	err    error // first write error, reported by Flush and Close
}

// NewAccessLog returns an AccessLog writing to w.
func NewAccessLog(w io.Writer, opts AccessLogOptions) *AccessLog {
	a := &AccessLog{json: opts.JSON, interval: opts.FlushInterval, size: opts.BufferSize, w: w}
	setDefault(&a.interval, DefaultAccessLogFlushInterval)
	setDefault(&a.size, DefaultAccessLogBufferSize)
	a.buf = make([]byte, 0, a.size+1024)
	if a.json {
		a.inner = slog.NewJSONHandler(accessLogWriter{a}, nil)
	} else {
		a.inner = slog.NewTextHandler(accessLogWriter{a}, nil)
	}
	a.timer = time.AfterFunc(time.Hour, func() { _ = a.Flush() })
	a.timer.Stop()
	return a
}

// Enabled, Handle, WithAttrs and WithGroup make an AccessLog a
// slog.Handler; they behave as slog's JSON or text handler over the buffer.
func (a *AccessLog) Enabled(ctx context.Context, l slog.Level) bool  { return a.inner.Enabled(ctx, l) }
func (a *AccessLog) Handle(ctx context.Context, r slog.Record) error { return a.inner.Handle(ctx, r) }
func (a *AccessLog) WithAttrs(as []slog.Attr) slog.Handler           { return a.inner.WithAttrs(as) }
func (a *AccessLog) WithGroup(name string) slog.Handler              { return a.inner.WithGroup(name) }

// Flush writes the waiting lines now.
func (a *AccessLog) Flush() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.flushLocked()
	return a.err
}

// Close flushes and stops buffering: later lines are written at once.
func (a *AccessLog) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	a.timer.Stop()
	a.flushLocked()
	return a.err
}

func (a *AccessLog) flushLocked() {
	a.armed = false
	if len(a.buf) == 0 {
		return
	}
	if _, err := a.w.Write(a.buf); err != nil && a.err == nil {
		a.err = err // the lines are dropped, as slog drops a line it fails to write
	}
	a.buf = a.buf[:0]
}

// add appends complete lines to the buffer and writes it when due.
func (a *AccessLog) add(lines []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.buf = append(a.buf, lines...)
	switch {
	case a.closed || len(a.buf) >= a.size:
		a.flushLocked()
	case !a.armed:
		a.armed = true
		a.timer.Reset(a.interval)
	}
}

// accessLogWriter is the io.Writer under the slog handler for other records.
type accessLogWriter struct{ a *AccessLog }

func (w accessLogWriter) Write(p []byte) (int, error) {
	w.a.add(p)
	return len(p), nil
}

// logEntry encodes e's line as slog would for the attributes accessAttrs
// returns, at time now, and buffers it.
func (a *AccessLog) logEntry(now time.Time, e *accessEntry, d time.Duration) {
	var scratch [512]byte
	b := scratch[:0]
	if a.json {
		b = append(b, `{"time":"`...)
		b = now.AppendFormat(b, time.RFC3339Nano)
		b = append(b, `","level":"INFO","msg":"request"`...)
	} else {
		b = append(b, "time="...)
		b = appendRFC3339Millis(b, now)
		b = append(b, " level=INFO msg=request"...)
	}
	b = a.addr(b, "client", e.clientText, e.client)
	b = a.addr(b, "orig_dst", e.origText, e.orig)
	b = a.str(b, "host", e.host)
	b = a.int(b, "port", int64(e.port))
	b = a.str(b, "protocol", e.protocol)
	b = a.str(b, "upstream", e.upstream)
	b = a.str(b, "rule", e.rule)
	b = a.str(b, "decision", e.decision)
	b = a.int(b, "status", int64(e.status))
	if e.grpcStatus != "" {
		b = a.str(b, "grpc_status", e.grpcStatus)
	}
	b = a.int(b, "bytes_in", e.bytesIn)
	b = a.int(b, "bytes_out", e.bytesOut)
	if a.json {
		b = a.int(b, "duration", int64(d)) // slog's JSON form: nanoseconds
	} else {
		b = append(b, " duration="...)
		b = append(b, d.String()...)
	}
	if e.reason != "" {
		b = a.str(b, "reason", e.reason)
	}
	if ns := e.namespace(); ns != "" {
		b = a.str(b, "namespace", ns)
	}
	if pod := e.pod(); pod != "" {
		b = a.str(b, "pod", pod)
	}
	if a.json {
		b = append(b, '}')
	}
	b = append(b, '\n')
	a.add(b)
}

// key appends the separator and key before a value.
func (a *AccessLog) key(b []byte, k string) []byte {
	if a.json {
		b = append(b, ',', '"')
		b = append(b, k...)
		return append(b, '"', ':')
	}
	b = append(b, ' ')
	b = append(b, k...)
	return append(b, '=')
}

func (a *AccessLog) int(b []byte, k string, v int64) []byte {
	return strconv.AppendInt(a.key(b, k), v, 10)
}

// addr appends text, or ap formatted without allocating when text is "".
func (a *AccessLog) addr(b []byte, k, text string, ap netip.AddrPort) []byte {
	if text != "" || ap.Addr().Zone() != "" { // a zone may need quoting
		return a.str(b, k, addrText(text, ap))
	}
	b = a.key(b, k)
	if a.json {
		return append(ap.AppendTo(append(b, '"')), '"')
	}
	return ap.AppendTo(b) // digits, dots, colons and brackets: never quoted
}

func (a *AccessLog) str(b []byte, k, v string) []byte {
	b = a.key(b, k)
	if a.json {
		b = append(b, '"')
		b = appendJSONString(b, v)
		return append(b, '"')
	}
	if textNeedsQuoting(v) {
		return strconv.AppendQuote(b, v)
	}
	return append(b, v...)
}

// appendRFC3339Millis is slog's text time: RFC 3339 with exactly three
// fractional digits.
func appendRFC3339Millis(b []byte, t time.Time) []byte {
	const prefixLen = len("2006-01-02T15:04:05.000")
	n := len(b)
	t = t.Truncate(time.Millisecond).Add(time.Millisecond / 10) // RFC3339Nano trims zeros: keep 4 digits, drop the 4th
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b[:n+prefixLen], b[n+prefixLen+1:]...)
}

// jsonSafe reports whether an ASCII byte needs no escaping in a JSON string.
func jsonSafe(c byte) bool { return c >= 0x20 && c != '"' && c != '\\' }

// appendJSONString escapes s as slog's JSON handler does.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if jsonSafe(c) {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(append(b, s[start:i]...), `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(append(b, s[start:i]...), '\\', 'u', '2', '0', '2', hex[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	return append(b, s[start:]...)
}

// textNeedsQuoting is slog's text handler's rule for quoting a string.
func textNeedsQuoting(s string) bool {
	if s == "" {
		return true
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c != '\\' && (c == ' ' || c == '=' || !jsonSafe(c)) {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
		i += size
	}
	return false
}
