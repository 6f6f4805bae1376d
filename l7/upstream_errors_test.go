package l7

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/rules"
)

func TestUpstreamFailuresMapTo502And504(t *testing.T) {
	// A port where nothing listens.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	deadPort := uint16(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	slow := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
	})
	cases := []struct {
		name   string
		orig   uint16
		rule   *rules.Rule
		status int
		reason string
	}{
		{"connection refused", deadPort, httpRule("dead", "*.allowed.test", deadPort), 502, "connecting to upstream failed"},
		{"response timeout", slow.port, httpRule("slow", "*.allowed.test", slow.port), 504, "timed out"},
		{"egress proxy required but none configured", slow.port,
			&rules.Rule{Name: "via", Service: "*.allowed.test", UseEgressProxy: true, Ports: []rules.Port{{Number: slow.port, Protocol: rules.HTTP}}},
			502, "egress proxy"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Config{
				Rules:           compileRules(t, tc.rule),
				OriginalDst:     fixedOrig{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), tc.orig)},
				ResponseTimeout: 200 * time.Millisecond,
			})
			rc := e.dial()
			rc.send("GET / HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n")
			resp, body := rc.read("GET")
			if resp.StatusCode != tc.status || resp.Header.Get("X-Egressd") != "error" {
				t.Fatalf("got %d %q, want %d", resp.StatusCode, body, tc.status)
			}
			mustContain(t, body, tc.reason)
			// The client connection is still usable.
			rc.send("GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n")
			if resp, _ := rc.read("GET"); resp.StatusCode != 403 {
				t.Fatalf("next request: %d", resp.StatusCode)
			}
		})
	}
}

func TestHTTP10ClientGetsADecodedBodyAndClose(t *testing.T) {
	e, _ := allowEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("chunk-one "))
		w.(http.Flusher).Flush() // forces a chunked response
		w.Write([]byte("chunk-two"))
	})
	rc := e.dial()
	rc.send("GET / HTTP/1.0\r\nHost: a.allowed.test\r\n\r\n")
	resp, body := rc.read("GET")
	if resp.StatusCode != 200 || body != "chunk-one chunk-two" || len(resp.TransferEncoding) != 0 {
		t.Fatalf("got %d %q %v", resp.StatusCode, body, resp.TransferEncoding)
	}
	if !rc.closed() {
		t.Error("HTTP/1.0 connection left open")
	}
}

func TestResponseWithoutLengthIsReadUntilClose(t *testing.T) {
	_, u, rc := rawExchange(t, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nstreamed until close")
	resp, body := rc.read("GET")
	if resp.StatusCode != 200 || body != "streamed until close" || !resp.Close {
		t.Fatalf("got %d %q close=%v", resp.StatusCode, body, resp.Close)
	}
	mustContain(t, <-u.got, "GET / HTTP/1.1\r\nHost: a.allowed.test\r\n")
}

func TestShutdownFinishesRequestsInFlight(t *testing.T) {
	release, arrived := make(chan struct{}), make(chan struct{})
	e, _ := allowEnv(t, func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
		w.Write([]byte("finished"))
	})
	idle := e.dial()
	idle.send("GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n")
	idle.read("GET")
	busy := e.dial()
	busy.send("GET / HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n")
	<-arrived // the request is at the upstream
	done := make(chan error, 1)
	go func() { done <- e.p.Shutdown(context.Background()) }()
	if !idle.closed() {
		t.Error("idle connection not closed by Shutdown")
	}
	close(release)
	resp, body := busy.read("GET")
	if resp.StatusCode != 200 || body != "finished" {
		t.Fatalf("in-flight request: %d %q", resp.StatusCode, body)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, err := net.Dial("tcp", e.addr); err == nil {
		t.Error("still accepting after Shutdown")
	}
}

// rawUpstream answers every connection with one canned response and
// reports the request head it received.
type rawUpstream struct {
	port uint16
	got  chan string
}

// A response whose Transfer-Encoding list has an empty element (", chunked":
// net/http refuses it, RFC 9110 would read past it) is framed by nobody:
// the client gets 502, none of the upstream's body, and the upstream
// connection is not kept (FuzzResponseDifferential found egressd reading
// it as chunked).
func TestResponseWithAnEmptyTransferCodingIs502(t *testing.T) {
	e, u, rc := rawExchange(t, "HTTP/1.1 200 OK\r\nTransfer-Encoding: , chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
	resp, body := rc.read("GET")
	if resp.StatusCode != 502 || resp.Header.Get("X-Egressd") != "error" || strings.Contains(body, "hello") {
		t.Fatalf("got %d %q, want egressd's 502", resp.StatusCode, body)
	}
	<-u.got
	if n := e.p.h1.IdleUpstreams(); n != 0 {
		t.Errorf("%d upstream connections kept after an unframable response", n)
	}
}

// rawExchange sends one allowed GET through a proxy to a raw upstream that
// answers response.
func rawExchange(t *testing.T, response string) (*env, *rawUpstream, *rawClient) {
	t.Helper()
	u := newRawUpstream(t, response)
	e := newEnv(t, Config{
		Rules:       compileRules(t, httpRule("raw", "*.allowed.test", u.port)),
		OriginalDst: fixedOrig{u.orig()},
	})
	rc := e.dial()
	rc.send("GET / HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n")
	return e, u, rc
}

func newRawUpstream(t testing.TB, response string) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{port: uint16(ln.Addr().(*net.TCPAddr).Port), got: make(chan string, 16)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 4096)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, _ := c.Read(buf)
			u.got <- string(buf[:n])
			c.Write([]byte(response))
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return u
}

func (u *rawUpstream) orig() netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), u.port)
}

func TestStalePooledConnectionIsNotUsedForABody(t *testing.T) {
	// The upstream drops idle keep-alive connections after 50ms.
	var closed <-chan struct{}
	u := newUpstreamWith(t, nil, func(s *http.Server) { s.IdleTimeout = 50 * time.Millisecond; closed = closedConns(s) })
	e := newEnv(t, Config{
		Rules:       compileRules(t, httpRule("wild", "*.allowed.test", u.port)),
		OriginalDst: fixedOrig{u.orig()},
	})
	rc := e.dial()
	for i, req := range []string{
		"GET /1 HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n",
		"POST /2 HTTP/1.1\r\nHost: a.allowed.test\r\nContent-Length: 4\r\n\r\nbody",
		"GET /3 HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n",
	} {
		rc.send(req)
		if resp, body := rc.read("GET"); resp.StatusCode != 200 {
			t.Fatalf("request %d after the upstream closed its idle connection: %d %q", i+1, resp.StatusCode, body)
		}
		u.next(t)
		<-closed // the upstream closed the connection, idle in egressd's pool
	}
}

// closedConns makes s report each connection it has closed (after the
// close: the FIN is in the peer's socket by then).
func closedConns(s *http.Server) <-chan struct{} {
	c := make(chan struct{}, 16)
	s.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateClosed {
			c <- struct{}{}
		}
	}
	return c
}

func TestShutdownAnswersConnectionClose(t *testing.T) {
	release, arrived := make(chan struct{}), make(chan struct{})
	e, _ := allowEnv(t, func(w http.ResponseWriter, r *http.Request) { close(arrived); <-release })
	rc := e.dial()
	rc.send("GET / HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n")
	<-arrived // the request is in flight
	done := make(chan error, 1)
	go func() { done <- e.p.Shutdown(context.Background()) }()
	waitFor(t, e.p.closing.Load) // Shutdown is under way
	close(release)
	if resp, _ := rc.read("GET"); !resp.Close {
		t.Error("response during Shutdown does not say Connection: close")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestRetryAfterAStalePooledConnectionUsesANewOne(t *testing.T) {
	gate := make(chan struct{})
	var closed <-chan struct{}
	u := newUpstreamWith(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-gate
		}
	}, func(s *http.Server) { s.IdleTimeout = 50 * time.Millisecond; closed = closedConns(s) })
	e := newEnv(t, Config{
		Rules:       compileRules(t, httpRule("wild", "*.allowed.test", u.port)),
		OriginalDst: fixedOrig{u.orig()},
	})
	// Two requests at once leave two connections in the pool...
	a, b := e.dial(), e.dial()
	a.send("GET /slow HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n")
	b.send("GET /slow HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n")
	u.next(t)
	u.next(t)
	close(gate)
	a.read("GET")
	b.read("GET")
	// ...which the upstream then closes while they are idle.
	<-closed
	<-closed
	a.send("GET /after HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n")
	if resp, body := a.read("GET"); resp.StatusCode != 200 {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if got := u.next(t); got.URI != "/after" {
		t.Fatalf("upstream got %q", got.URI)
	}
}

func TestShutdownClosesAConnectionThatSentNothing(t *testing.T) {
	e, _ := allowEnv(t, nil)
	silent := e.dial()
	waitFor(t, func() bool { // accepted, waiting for its first bytes
		e.p.mu.Lock()
		defer e.p.mu.Unlock()
		return len(e.p.conns) == 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.p.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown waited for a connection that never sent a byte: %v", err)
	}
	if !silent.closed() {
		t.Error("silent connection left open")
	}
}
