package l7

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// The second request of each case goes on the pooled connection, whose
// head is written inside a wait for the answer (headwrite.go): an answer
// sent at once (before the proxy could start waiting, on a loopback) is
// read; an upstream that stays silent gets the response timeout's 504; a
// client that leaves while it waits has the upstream connection closed.
func TestReusedConnectionWaitsForTheAnswer(t *testing.T) {
	// serve answers the first request, then does what second says.
	serve := func(second func(c net.Conn, br *bufio.Reader)) func(*scriptedUpstream, int, net.Conn, *bufio.Reader) {
		return func(u *scriptedUpstream, i int, c net.Conn, br *bufio.Reader) {
			r, err := u.readRequest(br)
			if err != nil {
				return
			}
			hello(c, r)
			second(c, br)
		}
	}
	first := func(t *testing.T, e *env) {
		rc := e.dial()
		rc.send("GET /first HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n")
		if resp, body := rc.read("GET"); resp.StatusCode != 200 || body != "hello /first" {
			t.Fatalf("first request: %d %q", resp.StatusCode, body)
		}
	}
	t.Run("answered at once, many times", func(t *testing.T) {
		u := newScriptedUpstream(t, nil, func(u *scriptedUpstream, i int, c net.Conn, br *bufio.Reader) { serveHello(u, c, br) })
		e := scriptedEnv(t, u, nil)
		first(t, e)
		rc := e.dial()
		for i := range 50 { // u.reqs holds 100
			rc.send("GET /again HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n")
			if resp, body := rc.read("GET"); resp.StatusCode != 200 || body != "hello /again" {
				t.Fatalf("request %d on the pooled connection: %d %q", i, resp.StatusCode, body)
			}
		}
		if n := u.conns.Load(); n != 1 {
			t.Fatalf("upstream saw %d connections, want 1 (the pooled one)", n)
		}
	})
	t.Run("silent upstream", func(t *testing.T) {
		u := newScriptedUpstream(t, nil, serve(func(c net.Conn, br *bufio.Reader) {
			br.ReadString('\n') // the second request arrives; no answer
			io.Copy(io.Discard, br)
		}))
		e := scriptedEnv(t, u, nil, func(c *Config) { c.ResponseTimeout = 200 * time.Millisecond })
		first(t, e)
		rc := e.dial()
		rc.send("GET /silent HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n")
		if resp, _ := rc.read("GET"); resp.StatusCode != 504 {
			t.Fatalf("silent upstream on a pooled connection: %d, want 504", resp.StatusCode)
		}
		if n := u.conns.Load(); n != 1 {
			t.Fatalf("upstream saw %d connections, want 1", n)
		}
	})
	t.Run("client leaves", func(t *testing.T) {
		closed := make(chan struct{})
		got := make(chan struct{})
		u := newScriptedUpstream(t, nil, serve(func(c net.Conn, br *bufio.Reader) {
			br.ReadString('\n')
			close(got)
			io.Copy(io.Discard, br) // until egressd closes the connection
			close(closed)
		}))
		e := scriptedEnv(t, u, nil)
		first(t, e)
		rc := e.dial()
		rc.send("GET /poll HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n")
		<-got
		rc.c.Close()
		select {
		case <-closed:
		case <-time.After(5 * time.Second):
			t.Fatal("pooled upstream connection still open 5 s after the client left")
		}
		waitFor(t, func() bool { return strings.Contains(e.logs.String(), "client went away") })
	})
}
