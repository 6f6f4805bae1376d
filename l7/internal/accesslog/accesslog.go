// Package accesslog is the proxy's batched access-log handler: a
// slog.Handler whose request lines are encoded without slog and without
// allocating, in exactly the form of slog's JSON or text handler, and written
// in batches instead of one write(2) per request; and the same request line
// as slog attributes, for the other handlers.
//
// Why a package of its own: the encoder is an optimisation with a contract
// (byte for byte slog's output), testable without a proxy; l7 fills a Line
// from its per-request record, and for other handlers logs Line.Attrs.
// BenchmarkEncode separates the encoder's gain from batching's: slog's own
// handler over the same batching buffer against this encoder.
//
// Files: accesslog.go (Handler: buffer, flush timer, Close), encode.go (Line
// and its JSON/text encoding, slog's quoting and escaping rules), attrs.go
// (the same Line as slog attributes, for any other handler, in the order
// and forms encode.go writes).
package accesslog

import (
	"cmp"
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// Defaults of Options.
const (
	DefaultFlushInterval = 100 * time.Millisecond
	DefaultBufferSize    = 32 << 10
)

// Options configures a Handler. The zero value writes text.
type Options struct {
	JSON          bool          // lines as slog's JSON handler writes them; false: as its text handler does
	FlushInterval time.Duration // longest time a line waits in the buffer; 0: DefaultFlushInterval
	BufferSize    int           // lines are written once this many bytes wait; 0: DefaultBufferSize
}

// Handler is a slog.Handler for the access log (l7.Config.AccessLog =
// slog.New(al)) that makes it cheap: the proxy's request lines are encoded
// by Handler itself, without allocating, in exactly the form of slog's JSON or
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
type Handler struct {
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

// New returns a Handler writing to w.
func New(w io.Writer, opts Options) *Handler {
	a := &Handler{json: opts.JSON, interval: opts.FlushInterval, size: opts.BufferSize, w: w}
	a.interval = cmp.Or(a.interval, DefaultFlushInterval)
	a.size = cmp.Or(a.size, DefaultBufferSize)
	a.buf = make([]byte, 0, a.size+1024)
	if a.json {
		a.inner = slog.NewJSONHandler(bufWriter{a}, nil)
	} else {
		a.inner = slog.NewTextHandler(bufWriter{a}, nil)
	}
	a.timer = time.AfterFunc(time.Hour, func() { _ = a.Flush() })
	a.timer.Stop()
	return a
}

// Enabled, Handle, WithAttrs and WithGroup make a Handler a
// slog.Handler; they behave as slog's JSON or text handler over the buffer.
func (a *Handler) Enabled(ctx context.Context, l slog.Level) bool  { return a.inner.Enabled(ctx, l) }
func (a *Handler) Handle(ctx context.Context, r slog.Record) error { return a.inner.Handle(ctx, r) }
func (a *Handler) WithAttrs(as []slog.Attr) slog.Handler           { return a.inner.WithAttrs(as) }
func (a *Handler) WithGroup(name string) slog.Handler              { return a.inner.WithGroup(name) }

// Flush writes the waiting lines now.
func (a *Handler) Flush() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.flushLocked()
	return a.err
}

// Close flushes and stops buffering: later lines are written at once.
func (a *Handler) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	a.timer.Stop()
	a.flushLocked()
	return a.err
}

func (a *Handler) flushLocked() {
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
func (a *Handler) add(lines []byte) {
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

// bufWriter is the io.Writer under the slog handler for other records.
type bufWriter struct{ a *Handler }

func (w bufWriter) Write(p []byte) (int, error) {
	w.a.add(p)
	return len(p), nil
}
