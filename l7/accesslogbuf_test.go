package l7

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/egressd/egressd/l7/internal/client"
)

// TestAccessLogEncodesAsSlog: the lines an AccessLog encodes itself are
// byte for byte those slog's JSON and text handlers write for the same
// record, odd strings included.
func TestAccessLogEncodesAsSlog(t *testing.T) {
	base := client.Entry{
		Client: netip.MustParseAddrPort("10.0.0.7:40000"), Orig: netip.MustParseAddrPort("[2001:2::1]:443"),
		Host: "api.allowed.test", Port: 443, Protocol: client.ProtoHTTP1, Upstream: "https", Rule: "wild",
		Decision: "allow", Status: 200, BytesIn: 12, BytesOut: 1 << 40,
	}
	odd := []string{"", "a b", "k=v", `q"uote\back`, "tab\tnl\nctl\x01\x7f", "bad\xffutf8", "sep\u2028\u2029", "héllo ünïcode", "<&>", "\u00a0nbsp"}
	var entries []client.Entry
	entries = append(entries, base)
	for _, s := range odd {
		e := base
		e.Host, e.Reason, e.Rule = s, "upstream said: "+s, s
		e.ClientText = "[::1]:9"
		entries = append(entries, e)
		e.Scope = &Scope{Namespace: s, Pod: "pod " + s}
		entries = append(entries, e)
	}
	grpc := base
	grpc.Protocol, grpc.GRPCStatus = client.ProtoGRPC, "7"
	entries = append(entries, grpc)
	grpc.Reason = "denied"
	entries = append(entries, grpc)
	now := time.Date(2026, 11, 26, 6, 30, 0, 123000000, time.FixedZone("x", 3600))
	for _, asJSON := range []bool{true, false} {
		for _, e := range entries {
			for _, d := range []time.Duration{0, 1500 * time.Microsecond, 3*time.Second + 7} {
				var got, want bytes.Buffer
				a := NewAccessLog(&got, AccessLogOptions{JSON: asJSON})
				l := accessLine(&e, d)
				a.Log(now, &l)
				a.Close()

				var h slog.Handler = slog.NewTextHandler(&want, nil)
				if asJSON {
					h = slog.NewJSONHandler(&want, nil)
				}
				r := slog.NewRecord(now, slog.LevelInfo, "request", 0)
				attrs, n := l.Attrs()
				r.AddAttrs(attrs[:n]...)
				h.Handle(context.Background(), r)
				if got.String() != want.String() {
					t.Errorf("json=%v:\n got %s\nwant %s", asJSON, got.String(), want.String())
				}
			}
		}
	}
}

// TestAccessLogBuffered: through a proxy, lines wait in the buffer (no
// write per request) until the flush interval, a full buffer or Close, and
// none is lost.
func TestAccessLogBuffered(t *testing.T) {
	u := newUpstream(t, nil)
	out := &syncBuffer{}
	al := NewAccessLog(out, AccessLogOptions{JSON: true, FlushInterval: time.Hour, BufferSize: 2000})
	e := newEnv(t, Config{
		Rules:       compileRules(t, httpRule("wild", "*.allowed.test", u.port)),
		OriginalDst: fixedOrig{u.orig()},
		AccessLog:   slog.New(al),
	})
	rc := e.dial()
	get := func() {
		rc.send("GET / HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n")
		rc.read("GET")
	}
	get()
	slog.New(al).Info("other record", "k", 1) // not from the proxy: slog's handler, same buffer
	if out.String() != "" {
		t.Fatalf("written before any flush: %q", out.String())
	}
	for range 20 { // the 2000-byte buffer fills
		get()
	}
	if strings.Count(out.String(), "\n") < 6 { // ~290 bytes a line
		t.Fatalf("nothing written once the buffer filled: %q", out.String())
	}
	if err := al.Close(); err != nil {
		t.Fatal(err)
	}
	get() // after Close: written at once
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 23 {
		t.Fatalf("%d lines, want 23 (22 requests, 1 other):\n%s", len(lines), out.String())
	}
	for i, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %d %q: %v", i, l, err)
		}
		if want := map[bool]string{true: "other record", false: "request"}[i == 1]; m["msg"] != want || i != 1 && m["status"] != 200.0 {
			t.Errorf("line %d: %v", i, m)
		}
	}

	// The timer flushes a lone line.
	timed := &syncBuffer{}
	al = NewAccessLog(timed, AccessLogOptions{FlushInterval: 10 * time.Millisecond})
	defer al.Close()
	slog.New(al).Info("request", "k", "v")
	for deadline := time.Now().Add(10 * time.Second); timed.String() == "" && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if !strings.Contains(timed.String(), "msg=request k=v") {
		t.Fatalf("timer flush: %q", timed.String())
	}
}

func BenchmarkAccessLogEntry(b *testing.B) {
	e := client.Entry{
		Client: netip.MustParseAddrPort("10.0.0.7:40000"), Orig: netip.MustParseAddrPort("198.18.0.1:80"),
		Host: "api.allowed.test", Port: 80, Protocol: client.ProtoHTTP1, Upstream: "http", Rule: "wild",
		Decision: "allow", Status: 200, BytesIn: 0, BytesOut: 1234,
	}
	for _, f := range []struct {
		name string
		json bool
	}{{"json", true}, {"text", false}} {
		b.Run("l7/"+f.name, func(b *testing.B) {
			a := NewAccessLog(io.Discard, AccessLogOptions{JSON: f.json})
			b.ReportAllocs()
			for b.Loop() {
				l := accessLine(&e, time.Millisecond)
				a.Log(time.Now(), &l)
			}
		})
		// slog's handler writing into the same batching buffer: what
		// batching alone gives, so l7/ against slog-batched/ is the
		// encoder's own gain, and slog-batched/ against slog/ batching's.
		b.Run("slog-batched/"+f.name, func(b *testing.B) {
			l := slog.New(NewAccessLog(io.Discard, AccessLogOptions{JSON: f.json}))
			b.ReportAllocs()
			for b.Loop() {
				line := accessLine(&e, time.Millisecond)
				attrs, n := line.Attrs()
				l.LogAttrs(context.Background(), slog.LevelInfo, "request", attrs[:n]...)
			}
		})
		// slog's handler with a write(2) per line, to a real file, as
		// without the batching handler.
		b.Run("slog/"+f.name, func(b *testing.B) {
			w, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			var h slog.Handler = slog.NewTextHandler(w, nil)
			if f.json {
				h = slog.NewJSONHandler(w, nil)
			}
			l := slog.New(h)
			b.ReportAllocs()
			for b.Loop() {
				line := accessLine(&e, time.Millisecond)
				attrs, n := line.Attrs()
				l.LogAttrs(context.Background(), slog.LevelInfo, "request", attrs[:n]...)
			}
		})
	}
}

// TestAccessLogConcurrent: lines logged from many goroutines while the
// timer and a full buffer flush all arrive, whole and once, by Close.
func TestAccessLogConcurrent(t *testing.T) {
	out := &syncBuffer{}
	a := NewAccessLog(out, AccessLogOptions{JSON: true, FlushInterval: time.Millisecond, BufferSize: 4096})
	e := client.Entry{Client: netip.MustParseAddrPort("10.0.0.7:40000"), Orig: netip.MustParseAddrPort("198.18.0.1:80"),
		Host: "api.allowed.test", Port: 80, Protocol: client.ProtoHTTP1, Decision: "allow", Status: 200}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := e
			for i := range 200 {
				e.BytesOut = int64(g*1000 + i)
				l := accessLine(&e, time.Microsecond)
				a.Log(time.Now(), &l)
			}
		}()
	}
	wg.Wait()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	seen := map[float64]bool{}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		seen[m["bytes_out"].(float64)] = true
	}
	if len(seen) != 1600 || len(lines) != 1600 {
		t.Fatalf("%d lines, %d distinct, want 1600", len(lines), len(seen))
	}
}
