package l7

import (
	"github.com/egressd/egressd/internal/metric"

	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestShutdownSharedListener is the proxy's part of an agent hand-over: two
// Proxies serve one listening socket (the second through a duplicate of its
// descriptor, as a successor process receives it), clients keep sending —
// a new connection per request, and keep-alive POSTs back to back, which
// Go's client never retries once written — and the first Proxy shuts down.
// Every request must succeed, and the two Proxies' counts must add up to
// the client's. It fails if Shutdown closed a connection it had accepted,
// or an idle keep-alive connection that a request was about to use.
func TestShutdownSharedListener(t *testing.T) {
	var served atomic.Int64
	u := newUpstream(t, nil)
	counting := make(chan struct{})
	t.Cleanup(func() { close(counting) })
	go func() { // the recording upstream keeps 100 requests; count them instead
		for {
			select {
			case <-u.reqs:
				served.Add(1)
			case <-counting:
				return
			}
		}
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	ln2, err := net.FileListener(f) // the successor's descriptor of the same socket
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	old, oldReg := sharedProxy(t, u, ln)
	next, nextReg := sharedProxy(t, u, ln2)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	errs := make(chan error, 10)
	for _, keepAlive := range []bool{false, true, true} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sharedClientLoop(u, ln.Addr().String(), keepAlive, stop, &ok, &failed, errs)
		}()
	}
	waitFor(t, func() bool { return ok.Load() >= 50 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := old.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown of the first proxy: %v", err)
	}
	after := ok.Load()
	waitFor(t, func() bool { return ok.Load() >= after+50 })
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("request failed: %v", err)
	}
	if n := failed.Load(); n > 0 {
		t.Errorf("%d of %d requests failed", n, n+ok.Load())
	}
	counted := countRequests(t, oldReg) + countRequests(t, nextReg)
	// The upstream records a request before it answers; the counting
	// goroutine may not have taken the last records off u.reqs yet.
	for deadline := time.Now().Add(5 * time.Second); served.Load() < ok.Load() && time.Now().Before(deadline); time.Sleep(time.Millisecond) {
	}
	if int64(counted) != ok.Load() || served.Load() != ok.Load() {
		t.Errorf("client got %d answers, the proxies counted %v, the upstream served %d", ok.Load(), counted, served.Load())
	}
	if err := next.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown of the second proxy: %v", err)
	}
}

// sharedProxy serves ln with a Proxy allowing *.allowed.test to u; the
// returned registry holds its metrics.
func sharedProxy(t *testing.T, u *upstream, ln net.Listener) (*Proxy, *metric.Registry) {
	t.Helper()
	reg := metric.NewRegistry()
	p, err := New(Config{
		Rules:         compileRules(t, httpRule("wild", "*.allowed.test", u.port)),
		OriginalDst:   fixedOrig{u.orig()},
		Metrics:       reg,
		AllowUpstream: testLoopback,
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, u.ln.Addr().String())
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	go p.Serve(ln)
	t.Cleanup(func() { p.Shutdown(context.Background()) })
	return p, reg
}

// sharedClientLoop POSTs (no retries by Go's client once written) through
// the proxy at addr until stop, at most 20000 times.
func sharedClientLoop(u *upstream, addr string, keepAlive bool, stop <-chan struct{}, ok, failed *atomic.Int64, errs chan<- error) {
	tr := &http.Transport{
		DisableKeepAlives: !keepAlive,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	url := fmt.Sprintf("http://a.allowed.test:%d/", u.port)
	for range 20000 {
		select {
		case <-stop:
			return
		default:
		}
		resp, err := c.Post(url, "text/plain", nil)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode != 200 {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		if err != nil {
			failed.Add(1)
			select {
			case errs <- err:
			default:
			}
			continue
		}
		ok.Add(1)
	}
}

func countRequests(t *testing.T, reg *metric.Registry) float64 {
	t.Helper()
	e := &env{t: t, reg: reg}
	return e.counter("egressd_requests_total", "decision", "allow")
}
