package main

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/egressd/egressd/l7"
)

// accessLog is the proxy's per-request log, built from --access-log and
// --log-format: lines in the format of the other logs, written to the same
// stderr in batches (l7.AccessLog: at 32 KiB or 100 ms after the oldest
// line) instead of one write(2) per request. close writes what waits; call
// it once the proxy has stopped, before the process exits. A process killed
// with SIGKILL loses at most the last 100 ms of lines.
type accessLog struct {
	logger *slog.Logger
	close  func() error
}

// newAccessLog builds the access log; onOff "off" turns it off (metrics stay).
func newAccessLog(onOff, format string, w io.Writer) accessLog {
	if onOff == "off" {
		return accessLog{slog.New(slog.DiscardHandler), func() error { return nil }}
	}
	al := l7.NewAccessLog(w, l7.AccessLogOptions{JSON: format == "json"})
	return accessLog{slog.New(al), al.Close}
}

// accessLogFlag is --access-log: "on" (also when unset, "") or "off".
type accessLogFlag struct{ v *string }

func (f accessLogFlag) String() string {
	if f.v == nil || *f.v == "" {
		return "on"
	}
	return *f.v
}

func (f accessLogFlag) Set(s string) error {
	if s != "on" && s != "off" {
		return fmt.Errorf("want on or off")
	}
	*f.v = s
	return nil
}

// accessLogUsage is --access-log's help text (run and gateway).
const accessLogUsage = "`on` or off: one log line per request (in --log-format, written in batches every 100 ms); off keeps the metrics"
