package accesslog

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"
)

// request logs one request record as egressd's access log does (l7's
// encoder writes exactly what slog's handlers write for these attributes).
func request(h slog.Handler, e Entry) {
	attrs := []slog.Attr{
		slog.String("client", e.Client), slog.String("orig_dst", e.OrigDst), slog.String("host", e.Host),
		slog.Int("port", int(e.Port)), slog.String("protocol", e.Protocol), slog.String("upstream", e.Upstream),
		slog.String("rule", e.Rule), slog.String("decision", e.Decision), slog.Int("status", e.Status),
	}
	if e.GRPCStatus != "" {
		attrs = append(attrs, slog.String("grpc_status", e.GRPCStatus))
	}
	attrs = append(attrs, slog.Int64("bytes_in", e.BytesIn), slog.Int64("bytes_out", e.BytesOut), slog.Duration("duration", e.Duration))
	if e.Reason != "" {
		attrs = append(attrs, slog.String("reason", e.Reason))
	}
	slog.New(h).LogAttrs(context.Background(), slog.LevelInfo, "request", attrs...)
}

var sample = Entry{Client: "198.19.40.2:40312", OrigDst: "198.19.40.10:443", Host: "api.example.test:443", Port: 443,
	Protocol: "http/1.1", Upstream: "https", Rule: "api", Decision: "allow", Status: 200, BytesIn: 12, BytesOut: 3456,
	Duration: 1234567 * time.Nanosecond}

// TestRoundTrip: what slog's JSON and text handlers write comes back field
// for field, also values that need quoting or escaping.
func TestRoundTrip(t *testing.T) {
	odd := sample
	odd.Host, odd.Reason = `a b="c"\d`+"\n\x01é\u2028", "no egress rule allows the host and port (audit mode: forwarded); x=y"
	odd.Decision, odd.GRPCStatus, odd.Rule, odd.Upstream = "would-deny", "7", "", ""
	for _, e := range []Entry{sample, odd} {
		for _, form := range []string{"json", "text"} {
			var buf bytes.Buffer
			var h slog.Handler = slog.NewTextHandler(&buf, nil)
			if form == "json" {
				h = slog.NewJSONHandler(&buf, nil)
			}
			request(h, e)
			got, err := NewReader(&buf).Next()
			if err != nil {
				t.Fatalf("%s: %v\n%s", form, err, buf.String())
			}
			got.Time, got.Line = "", 0
			if *got != e {
				t.Errorf("%s: read back\n%+v\nwant\n%+v", form, *got, e)
			}
		}
	}
}

// TestReader: other log records are skipped and counted; bad lines are
// errors with their line numbers, and reading goes on after them.
func TestReader(t *testing.T) {
	input := strings.Join([]string{
		`time=2026-12-02T01:00:00.000Z level=INFO msg="egressd running" mode=audit`,
		`time=2026-12-02T01:00:00.100Z level=INFO msg=request client=198.19.40.2:1 orig_dst=198.19.40.10:80 host=a.test port=80 protocol=http/1.1 upstream=http rule="" decision=would-deny status=200 bytes_in=0 bytes_out=5 duration=1.5ms reason="no egress rule allows the host and port (audit mode: forwarded)"`,
		``,
		`{"time":"2026-12-02T01:00:00.2Z","level":"INFO","msg":"request","client":"[2001:2::2]:1","orig_dst":"[2001:2::10]:443","host":"b.test","port":443,"protocol":"tls-passthrough","upstream":"tls","rule":"b","decision":"allow","status":0,"bytes_in":1,"bytes_out":2,"duration":1500000}`,
		`{"time":"2026-12-02T01:00:00.3Z","level":"INFO","msg":"request","host":"c.test","port":"eighty","protocol":"h2c","decision":"allow"}`,
		`{"time":"2026-12-02T01:00:00.3Z","level":"INFO","msg":"request","host":"c.test","port":80,"protocol":"h2c","decision":"al`,
		`time=x level=INFO msg=request host=c.test protocol=h2c decision=allow`,
		`time=x level=INFO msg=request host="c.test port=80 protocol=h2c decision=allow`,
		`garbage from another program`,
		`time=x level=INFO msg=request host=c.test port=70000 protocol=h2c decision=allow`,
		`time=x level=WARN msg="rules reload refused" problems=3`,
		"time=x level=INFO msg=request host=d.test port=8080 protocol=grpc decision=allow grpc_status=0 namespace=team-a pod=web-1\r",
	}, "\n")
	r := NewReader(strings.NewReader(input))
	var hosts []string
	var bad []string
	for {
		e, err := r.Next()
		if err == io.EOF {
			break
		}
		var le *LineError
		if errors.As(err, &le) {
			bad = append(bad, le.Error())
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		hosts = append(hosts, e.Host+"@"+itoa(e.Line))
		if e.Host == "d.test" && (e.Namespace != "team-a" || e.Pod != "web-1" || e.GRPCStatus != "0") {
			t.Errorf("d.test: %+v", e)
		}
		if e.Host == "a.test" && (e.Duration != 1500*time.Microsecond || e.Decision != "would-deny") {
			t.Errorf("a.test: %+v", e)
		}
		if e.Host == "b.test" && (e.Duration != 1500*time.Microsecond || e.Client != "[2001:2::2]:1") {
			t.Errorf("b.test: %+v", e)
		}
	}
	if got, want := strings.Join(hosts, " "), "a.test@2 b.test@4 d.test@12"; got != want {
		t.Errorf("entries %s, want %s", got, want)
	}
	wantBad := []string{
		`line 5: port "eighty": want a number from 0 to 65535`,
		`line 6: not a JSON log record: unexpected EOF`,
		`line 7: request line without port`,
		`line 8: host: unterminated or malformed quoted value at byte 36`,
		`line 9: not a log record: want key=value at byte 1`,
		`line 10: port "70000": want a number from 0 to 65535`,
	}
	if strings.Join(bad, "\n") != strings.Join(wantBad, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(bad, "\n"), strings.Join(wantBad, "\n"))
	}
	if r.Skipped() != 2 {
		t.Errorf("skipped %d records, want 2", r.Skipped())
	}
}

// TestLongLine: a line over MaxLine is one error, and the next line reads.
func TestLongLine(t *testing.T) {
	input := `time=x level=INFO msg=request reason=` + strings.Repeat("x", 3*MaxLine) + "\n" +
		`time=x level=INFO msg=request host=a.test port=80 protocol=http/1.1 decision=allow` // no final newline
	r := NewReader(strings.NewReader(input))
	_, err := r.Next()
	var le *LineError
	if !errors.As(err, &le) || le.Line != 1 || !strings.Contains(err.Error(), "longer than") {
		t.Fatalf("first line: %v", err)
	}
	e, err := r.Next()
	if err != nil || e.Host != "a.test" || e.Line != 2 {
		t.Fatalf("second line: %+v, %v", e, err)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
