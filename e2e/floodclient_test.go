package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The programs of the flood tests, run as the test binary in a pod's
// cgroup and namespace (TestMain dispatches on helperEnv).

// floodMain opens COUNT connections to TARGET (host:port) as attack KIND
// and holds them for SECONDS, then prints what it managed:
//
//	heads   each sends 30 KiB of a request head that never ends
//	idle    each sends nothing
//	h2body  each is an h2c connection with one POST whose body keeps
//	        coming as far as the proxy's flow control lets it
func floodMain(args []string) int {
	if len(args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: KIND TARGET COUNT SECONDS")
		return 2
	}
	kind, target := args[0], args[1]
	count, _ := strconv.Atoi(args[2])
	secs, _ := strconv.Atoi(args[3])
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs)*time.Second)
	defer cancel()
	var opened, failed atomic.Int32
	var conns sync.WaitGroup
	sem := make(chan struct{}, 32) // connects in flight
	for range count {
		sem <- struct{}{}
		conns.Add(1)
		go func() {
			defer conns.Done()
			ok := floodConn(ctx, kind, target, func() { <-sem })
			if ok {
				opened.Add(1)
			} else {
				failed.Add(1)
			}
		}()
	}
	conns.Wait()
	fmt.Printf("opened %d failed %d\n", opened.Load(), failed.Load())
	return 0
}

// floodConn runs one flood connection until ctx ends; connected is called
// once its connect is over. false: the proxy refused or closed it early.
func floodConn(ctx context.Context, kind, target string, connected func()) bool {
	if kind == "h2body" {
		return floodH2Body(ctx, target, connected)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", target)
	connected()
	if err != nil {
		return false
	}
	defer c.Close()
	if kind == "heads" {
		head := "POST / HTTP/1.1\r\nHost: exact.whitelisted.test\r\nX-Pad: " + strings.Repeat("p", 30<<10)
		if _, err := io.WriteString(c, head); err != nil {
			return false
		}
	}
	// Hold it: a read ends when the proxy closes it, or at ctx's end.
	go func() { <-ctx.Done(); c.SetReadDeadline(time.Now()) }()
	_, err = c.Read(make([]byte, 1))
	return ctx.Err() != nil && errors.Is(err, os.ErrDeadlineExceeded)
}

func floodH2Body(ctx context.Context, target string, connected func()) bool {
	var once sync.Once
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true) // h2c with prior knowledge
	tr := &http.Transport{Protocols: &protos, DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		defer once.Do(connected)
		var d net.Dialer
		return d.DialContext(ctx, network, target)
	}}
	defer once.Do(connected)
	defer tr.CloseIdleConnections()
	// The upstream sleeps before reading: the body stays with the proxy.
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://exact.whitelisted.test:8080/slow?ms=60000", endless{ctx})
	resp, err := tr.RoundTrip(req)
	if err == nil {
		resp.Body.Close()
	}
	return ctx.Err() != nil
}

// endless is a body that never ends before ctx does.
type endless struct{ ctx context.Context }

func (e endless) Read(p []byte) (int, error) {
	if err := e.ctx.Err(); err != nil {
		return 0, err
	}
	clear(p)
	return len(p), nil
}

// probeMain makes a request (a new connection each) to TARGET with Host
// HOST every 100 ms for SECONDS and prints "ok N failed M max_ms X", and
// each failure on stderr.
func probeMain(args []string) int {
	if len(args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: TARGET HOST SECONDS")
		return 2
	}
	target, host := args[0], args[1]
	secs, _ := strconv.Atoi(args[2])
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var ok, failed int
	var worst time.Duration
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for end := time.Now().Add(time.Duration(secs) * time.Second); time.Now().Before(end); <-tick.C {
		start := time.Now()
		req, _ := http.NewRequest("GET", "http://"+target+"/", nil)
		req.Host = host
		resp, err := c.Do(req)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode != 200 {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		took := time.Since(start)
		worst = max(worst, took)
		if err != nil {
			failed++
			fmt.Fprintf(os.Stderr, "%s: %v after %v\n", start.Format("15:04:05.000"), err, took)
			continue
		}
		ok++
	}
	fmt.Printf("ok %d failed %d max_ms %d\n", ok, failed, worst.Milliseconds())
	return 0
}
