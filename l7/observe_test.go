package l7

import (
	"github.com/egressd/egressd/internal/metric/metrictest"

	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestAccessLogLineAndMetrics(t *testing.T) {
	e, u := allowEnv(t, nil)
	rc := e.dial()
	rc.send("POST /x HTTP/1.1\r\nHost: api.allowed.test\r\nContent-Length: 3\r\n\r\nabc")
	rc.read("POST")
	rc.send("GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n")
	rc.read("GET")
	u.next(t)

	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(e.logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["msg"] == "request" {
			lines = append(lines, m)
		}
	}
	if len(lines) != 2 {
		t.Fatalf("%d request lines, want one per request:\n%s", len(lines), e.logs.String())
	}
	allow, deny := lines[0], lines[1]
	for _, k := range []string{"time", "client", "orig_dst", "host", "port", "protocol", "rule", "decision", "status", "bytes_in", "bytes_out", "duration"} {
		if _, ok := allow[k]; !ok {
			t.Errorf("access log lacks %q: %v", k, allow)
		}
	}
	if allow["host"] != "api.allowed.test" || allow["decision"] != "allow" || allow["rule"] != "wild" ||
		allow["status"] != 200.0 || allow["bytes_in"] != 3.0 || allow["orig_dst"] != u.orig().String() || allow["protocol"] != "http/1.1" {
		t.Errorf("allow line: %v", allow)
	}
	if deny["decision"] != "deny" || deny["status"] != 403.0 || deny["rule"] != "" {
		t.Errorf("deny line: %v", deny)
	}

	if n := e.histogramCount("egressd_request_duration_seconds"); n != 2 {
		t.Errorf("latency histogram counted %d requests, want 2", n)
	}
	if n := e.gauge("egressd_open_connections"); n != 1 {
		t.Errorf("open connections = %v, want 1", n)
	}
	rc.c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for e.gauge("egressd_open_connections") != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := e.gauge("egressd_open_connections"); n != 0 {
		t.Errorf("open connections after close = %v", n)
	}
	// No label carries the requested host.
	mfs, _ := metrictest.Gather(e.reg)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if strings.Contains(lp.GetValue(), "test") {
					t.Errorf("%s has label %s=%q", mf.GetName(), lp.GetName(), lp.GetValue())
				}
			}
		}
	}
}

// gauge reads an unlabelled gauge from the proxy's registry.
func (e *env) gauge(name string) float64 {
	mfs, _ := metrictest.Gather(e.reg)
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}

// histogramCount sums the sample counts of a histogram's series.
func (e *env) histogramCount(name string) uint64 {
	mfs, _ := metrictest.Gather(e.reg)
	var n uint64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				n += m.GetHistogram().GetSampleCount()
			}
		}
	}
	return n
}

func TestAccessLogSeparateFromErrors(t *testing.T) {
	access := &syncBuffer{}
	u := newUpstream(t, nil)
	e := newEnv(t, Config{
		Rules:       compileRules(t, httpRule("wild", "*.allowed.test", u.port)),
		OriginalDst: fixedOrig{u.orig()},
		AccessLog:   slog.New(slog.NewJSONHandler(access, nil)),
	})
	rc := e.dial()
	rc.send("GET / HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n")
	rc.read("GET")
	if !strings.Contains(access.String(), `"msg":"request"`) || strings.Contains(e.logs.String(), `"msg":"request"`) {
		t.Fatalf("access log %q, error log %q", access.String(), e.logs.String())
	}

	off := newEnv(t, Config{
		Rules:       compileRules(t, httpRule("wild", "*.allowed.test", u.port)),
		OriginalDst: fixedOrig{u.orig()},
		AccessLog:   slog.New(slog.DiscardHandler),
	})
	rc = off.dial()
	rc.send("GET / HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n")
	if resp, _ := rc.read("GET"); resp.StatusCode != 200 || off.logs.String() != "" {
		t.Fatalf("with the access log off: %d, log %q", resp.StatusCode, off.logs.String())
	}
	if n := off.counter("egressd_requests_total", "decision", "allow"); n != 1 {
		t.Errorf("metrics still count with the access log off: %v", n)
	}
}

// TestMetricsPerRequestOnOneConnection: requests of one keep-alive connection
// with changing decisions are each counted under their own labels (the
// connection caches the previous request's collectors).
func TestMetricsPerRequestOnOneConnection(t *testing.T) {
	e, u := allowEnv(t, nil)
	rc := e.dial()
	for _, host := range []string{"api.allowed.test", "api.allowed.test", "evil.test", "api.allowed.test", "evil.test"} {
		rc.send("GET / HTTP/1.1\r\nHost: " + host + "\r\n\r\n")
		rc.read("GET")
	}
	u.next(t)
	if n := e.counter("egressd_requests_total", "decision", "allow"); n != 3 {
		t.Errorf("allowed requests counted: %v, want 3", n)
	}
	if n := e.counter("egressd_requests_total", "decision", "deny"); n != 2 {
		t.Errorf("denied requests counted: %v, want 2", n)
	}
	if n := e.histogramCount("egressd_request_duration_seconds"); n != 5 {
		t.Errorf("latency histogram counted %d requests, want 5", n)
	}
}
