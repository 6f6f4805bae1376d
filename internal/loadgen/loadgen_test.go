package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// server answers 200 with a fixed body, 403 for Host "deny.test", and a
// chunked body for path /chunked.
func server(t *testing.T) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host == "deny.test" {
			http.Error(w, "denied", http.StatusForbidden)
			return
		}
		if r.URL.Path == "/chunked" {
			w.Write([]byte("part one "))
			w.(http.Flusher).Flush()
			w.Write([]byte("part two"))
			return
		}
		w.Write([]byte(strings.Repeat("x", 100)))
	}))
	t.Cleanup(s.Close)
	return s
}

func target(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

func TestRun(t *testing.T) {
	s := server(t)
	cases := []struct {
		name  string
		cfg   Config
		check func(t *testing.T, r *Result)
	}{
		{"open loop keeps the schedule", Config{Rate: 500, Duration: 400 * time.Millisecond}, func(t *testing.T, r *Result) {
			if r.Responses != 200 || r.Status["200"] != 200 {
				t.Errorf("responses = %d, status = %v; want exactly the 200 scheduled", r.Responses, r.Status)
			}
			if r.DispatchLag == nil || r.DispatchLag.Max <= 0 {
				t.Errorf("dispatch lag not reported: %+v", r.DispatchLag)
			}
		}},
		{"closed loop reuses connections", Config{Conns: 2, Duration: 200 * time.Millisecond}, func(t *testing.T, r *Result) {
			if r.Responses < 10 || r.Dials != 2 {
				t.Errorf("responses = %d, dials = %d; want many over 2 connections", r.Responses, r.Dials)
			}
		}},
		{"new connection per request", Config{Conns: 1, Duration: 200 * time.Millisecond, NewConnPerRequest: true}, func(t *testing.T, r *Result) {
			if r.Responses < 2 || r.Dials != r.Responses {
				t.Errorf("responses = %d, dials = %d; want one dial per response", r.Responses, r.Dials)
			}
		}},
		{"non-2xx counted", Config{Host: "deny.test", Conns: 1, Duration: 100 * time.Millisecond}, func(t *testing.T, r *Result) {
			if r.Non2xx == 0 || r.Non2xx != r.Status["403"] || r.ErrorCount != 0 {
				t.Errorf("non2xx = %d, status = %v, errors = %v", r.Non2xx, r.Status, r.Errors)
			}
		}},
		{"chunked bodies", Config{Path: "/chunked", Conns: 1, Duration: 100 * time.Millisecond}, func(t *testing.T, r *Result) {
			if r.Responses < 2 || r.ErrorCount != 0 || r.Dials != 1 {
				t.Errorf("responses = %d, errors = %v, dials = %d", r.Responses, r.Errors, r.Dials)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Target = target(s)
			r, err := Run(context.Background(), tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if r.Responses > 0 && (r.Latency.P50 <= 0 || r.Latency.Max < r.Latency.P99 || len(r.Latency.Curve) != len(CurveQuantiles)) {
				t.Errorf("latency summary inconsistent: %+v", r.Latency)
			}
			tc.check(t, r)
		})
	}
}

// TestOpenLoopCountsStalls: a server that stalls once must show the stall in
// the latency of the requests scheduled during it, not only in one request.
func TestOpenLoopCountsStalls(t *testing.T) {
	var stalled atomic.Bool
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if stalled.CompareAndSwap(false, true) {
			time.Sleep(200 * time.Millisecond)
		}
		fmt.Fprint(w, "ok")
	}))
	t.Cleanup(s.Close)
	// One connection only: requests due during the stall must queue.
	r, err := Run(context.Background(), Config{Target: target(s), Rate: 200, Conns: 1, MaxConns: 1, Duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// 200 ms stall at 200 req/s delays ~40 requests (20% of 200): p90 must see it.
	if r.Latency.P90 < 50_000 {
		t.Errorf("p90 = %d µs after a 200 ms stall with queueing; coordinated omission?", r.Latency.P90)
	}
}

func TestErrorsByKind(t *testing.T) {
	r, err := Run(context.Background(), Config{Target: "127.0.0.1:1", Conns: 1, Duration: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if r.Errors[ErrDial] == 0 || r.Responses != 0 {
		t.Errorf("errors = %v, responses = %d; want dial errors only", r.Errors, r.Responses)
	}
}

// FuzzReadResponse: the response reader must never panic or loop on any
// input, and must report 2xx only for a well-formed status line.
func FuzzReadResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
		"HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX: y\r\n\r\n",
		"HTTP/1.0 204 No Content\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7fffffffffffffff\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		status, _, err := readResponse(bufio.NewReader(bytes.NewReader(b)))
		if err == nil && (status < 100 || status > 999) {
			t.Fatalf("status %d accepted without error", status)
		}
	})
}
