package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/egressd/egressd/internal/loadgen"
)

// holdConns opens spec.Conns keep-alive connections (50 dials at a time),
// sends one request on each, and keeps them all open for spec.Duration, so
// that the parent can read the proxy's memory with that many clients.
func holdConns(ctx context.Context, spec workerSpec) (*loadgen.Result, error) {
	res := &loadgen.Result{Mode: "hold", Conns: spec.Conns, Status: map[string]int64{}, Errors: map[string]int64{}}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
		sem   = make(chan struct{}, 50)
	)
	start := time.Now()
	for i := 0; i < spec.Conns && ctx.Err() == nil; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, code, kind := holdOne(spec)
			mu.Lock()
			defer mu.Unlock()
			res.Dials++
			if kind != "" {
				res.Errors[kind]++
				res.ErrorCount++
				return
			}
			conns = append(conns, c)
			res.Responses++
			res.Status[strconv.Itoa(code)]++
			if code/100 != 2 {
				res.Non2xx++
			}
		}()
	}
	wg.Wait()
	select {
	case <-ctx.Done():
	case <-time.After(spec.Duration):
	}
	for _, c := range conns {
		c.Close()
	}
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

// holdOne dials, sends one request and reads its response, leaving the
// connection open. It returns the error kind on failure.
func holdOne(spec workerSpec) (net.Conn, int, string) {
	c, err := net.DialTimeout("tcp", spec.Target, spec.Timeout)
	if err != nil {
		return nil, 0, loadgen.ErrDial
	}
	c.SetDeadline(time.Now().Add(spec.Timeout))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: "+spec.Host+"\r\n\r\n"); err != nil {
		c.Close()
		return nil, 0, loadgen.ErrWrite
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		c.Close()
		return nil, 0, loadgen.ErrRead
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	c.SetDeadline(time.Time{})
	return c, resp.StatusCode, ""
}
