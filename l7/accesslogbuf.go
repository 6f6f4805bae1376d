package l7

import (
	"io"

	"github.com/egressd/egressd/l7/internal/accesslog"
)

// The batched access-log handler lives in l7/internal/accesslog; these names
// are its public face.

// Defaults of AccessLogOptions.
const (
	DefaultAccessLogFlushInterval = accesslog.DefaultFlushInterval
	DefaultAccessLogBufferSize    = accesslog.DefaultBufferSize
)

// AccessLogOptions configures an AccessLog. The zero value writes text.
type AccessLogOptions = accesslog.Options

// AccessLog is a slog.Handler for the access log (Config.AccessLog =
// slog.New(al)) that makes it cheap: the proxy's request lines are encoded
// without slog and without allocating, in exactly the form of slog's JSON or
// text handler, and written in batches (once BufferSize bytes wait,
// FlushInterval after the oldest waiting line, on Flush and Close). Call
// Close (or Flush) after the proxy has shut down, before the process exits.
type AccessLog = accesslog.Handler

// NewAccessLog returns an AccessLog writing to w.
func NewAccessLog(w io.Writer, opts AccessLogOptions) *AccessLog { return accesslog.New(w, opts) }
