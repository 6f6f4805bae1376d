package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	stdlog "log"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer safe for a writing server and a reading
// test, which can wait for a string to be written (waitFor).
type lockedBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	written chan struct{} // closed and replaced on every Write
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.written != nil {
		close(l.written)
		l.written = nil
	}
	return l.b.Write(p)
}

// waitFor returns once s has been written, false after timeout.
func (l *lockedBuffer) waitFor(s string, timeout time.Duration) bool {
	deadline := time.After(timeout)
	for {
		l.mu.Lock()
		if strings.Contains(l.b.String(), s) {
			l.mu.Unlock()
			return true
		}
		if l.written == nil {
			l.written = make(chan struct{})
		}
		written := l.written
		l.mu.Unlock()
		select {
		case <-written:
		case <-deadline:
			return false
		}
	}
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// x/net's HTTP/2 transport prints through the standard log package. In a
// running gateway (the agent routes it the same way) such a line lands in
// the JSON log as a warning, not as bare text on stderr.
func TestStdLogLinesGoToTheLog(t *testing.T) {
	for _, name := range []string{"EGRESSD_LISTEN", "EGRESSD_ADMIN", "EGRESSD_LOG_FORMAT", "EGRESSD_ACCESS_LOG"} {
		unsetEnv(t, name)
	}
	t.Cleanup(func() {
		stdlog.SetOutput(os.Stderr)
		stdlog.SetFlags(stdlog.LstdFlags)
	})
	dir := writeRules(t, map[string]string{"good.yaml": goodRule})
	var stderr lockedBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- gatewayCmd(ctx, []string{"--rules", dir, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--log-format", "json"}, io.Discard, &stderr)
	}()
	if !stderr.waitFor("egressd gateway running", 10*time.Second) {
		t.Fatalf("gateway not running after 10s:\n%s", stderr.String())
	}
	const msg = "protocol error: received DATA on a HEAD request"
	stdlog.Print(msg) // as x/net's (*ClientConn).logf does, through Printf
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("gateway: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("not a JSON line: %q", line)
			continue
		}
		if rec["msg"] == msg {
			if rec["level"] != "WARN" || rec["via"] != "go-log" {
				t.Errorf("line %s: want level WARN and via go-log", line)
			}
			return
		}
	}
	t.Fatalf("no log line %q in:\n%s", msg, stderr.String())
}
