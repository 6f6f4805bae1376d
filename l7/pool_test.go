package l7

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/egressd/egressd/rules"
	"golang.org/x/sys/unix"
)

// scriptedUpstream is an HTTP/1.1 upstream that misbehaves on purpose: serve
// runs once per accepted connection (numbered from 0) with that
// connection and a reader on it (TLS terminated when a certificate is given).
type scriptedUpstream struct {
	port  uint16
	conns atomic.Int32       // connections accepted
	open  atomic.Int32       // connections not yet ended
	reqs  chan *http.Request // every request read with readRequest (body drained)
}

func newScriptedUpstream(t testing.TB, cert *tls.Certificate, serve func(u *scriptedUpstream, i int, c net.Conn, br *bufio.Reader)) *scriptedUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cert != nil {
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{*cert}})
	}
	u := &scriptedUpstream{port: uint16(ln.Addr().(*net.TCPAddr).Port), reqs: make(chan *http.Request, 100)}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var live []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.conns.Add(1)
			u.open.Add(1)
			mu.Lock()
			live = append(live, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer u.open.Add(-1)
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				serve(u, i, c, bufio.NewReader(c))
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range live {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return u
}

func (u *scriptedUpstream) orig() netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), u.port)
}

// readRequest reads one request and its body, and records it.
func (u *scriptedUpstream) readRequest(br *bufio.Reader) (*http.Request, error) {
	r, err := http.ReadRequest(br)
	if err != nil {
		return nil, err
	}
	io.Copy(io.Discard, r.Body)
	u.reqs <- r
	return r, nil
}

// count returns how many requests with method arrived so far.
func (u *scriptedUpstream) count(method string) int {
	n := 0
	for {
		select {
		case r := <-u.reqs:
			if r.Method == method {
				n++
			}
		default:
			return n
		}
	}
}

// hello answers r as a well-behaved keep-alive upstream.
func hello(c net.Conn, r *http.Request) {
	body := "hello " + r.URL.Path
	fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

// serveHello answers every request on the connection with hello.
func serveHello(u *scriptedUpstream, c net.Conn, br *bufio.Reader) {
	for {
		r, err := u.readRequest(br)
		if err != nil {
			return
		}
		hello(c, r)
	}
}

func scriptedEnv(t *testing.T, u *scriptedUpstream, ca *testCA, tune ...func(*Config)) *env {
	proto := rules.HTTP
	var roots = (*testCA)(nil)
	if ca != nil {
		proto, roots = rules.HTTPS, ca
	}
	cfg := Config{
		Rules: compileRules(t, &rules.Rule{Name: "scripted", Service: "*.allowed.test",
			Ports: []rules.Port{{Number: u.port, Protocol: proto}}}),
		OriginalDst: fixedOrig{u.orig()},
	}
	if roots != nil {
		cfg.RootCAs = roots.pool
	}
	for _, f := range tune {
		f(&cfg)
	}
	return newEnv(t, cfg)
}

// withTLS runs f once over plain TCP and once with TLS originated.
func withTLS(t *testing.T, f func(t *testing.T, ca *testCA, cert *tls.Certificate)) {
	t.Run("http", func(t *testing.T) { f(t, nil, nil) })
	t.Run("https", func(t *testing.T) {
		ca := newTestCA(t)
		cert := ca.leaf(t, "a.allowed.test", "b.allowed.test")
		f(t, ca, &cert)
	})
}

// The first connection answers HEAD with a body (44 bytes shaped like a
// response) — at once or a little later — and then answers everything
// else with that same fake response; any other connection behaves. The
// next client's GET must get its own answer, from another connection.
func TestPoisonedHEADDoesNotReachTheNextClient(t *testing.T) {
	const fake = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!"
	for _, delay := range []time.Duration{0, 100 * time.Millisecond} {
		t.Run(fmt.Sprintf("poison after %v", delay), func(t *testing.T) {
			withTLS(t, func(t *testing.T, ca *testCA, cert *tls.Certificate) {
				headAnswered := make(chan struct{})
				u := newScriptedUpstream(t, cert, func(u *scriptedUpstream, i int, c net.Conn, br *bufio.Reader) {
					if i > 0 {
						serveHello(u, c, br)
						return
					}
					if _, err := u.readRequest(br); err != nil {
						return
					}
					fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(fake))
					if delay > 0 {
						time.Sleep(delay)
					}
					io.WriteString(c, fake)
					waitAcked(c) // the poison is in egressd's socket
					close(headAnswered)
					for {
						if _, err := u.readRequest(br); err != nil {
							return
						}
						io.WriteString(c, fake)
					}
				})
				e := scriptedEnv(t, u, ca)
				first := e.dial()
				first.send("HEAD /h HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n")
				if resp, _ := first.read("HEAD"); resp.StatusCode != 200 || resp.ContentLength != int64(len(fake)) {
					t.Fatalf("HEAD: %d, length %d", resp.StatusCode, resp.ContentLength)
				}
				<-headAnswered
				second := e.dial()
				second.send("GET /mine HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n")
				if resp, body := second.read("GET"); resp.StatusCode != 200 || body != "hello /mine" {
					t.Fatalf("second client got %d %q, want its own response", resp.StatusCode, body)
				}
				if n := u.conns.Load(); n != 2 {
					t.Fatalf("upstream saw %d connections, want the GET on a new one", n)
				}
			})
		})
	}
}

// An upstream that sends 408 on an idle keep-alive connection before
// closing it (as several servers do): the next request must not get that
// 408, nor fail.
func TestIdle408IsNotTheNextClientsResponse(t *testing.T) {
	withTLS(t, func(t *testing.T, ca *testCA, cert *tls.Certificate) {
		sent408 := make(chan struct{})
		u := newScriptedUpstream(t, cert, func(u *scriptedUpstream, i int, c net.Conn, br *bufio.Reader) {
			if i > 0 {
				serveHello(u, c, br)
				return
			}
			r, err := u.readRequest(br)
			if err != nil {
				return
			}
			hello(c, r)
			time.Sleep(50 * time.Millisecond)
			io.WriteString(c, "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
			waitAcked(c) // the 408 is in egressd's socket
			close(sent408)
			// Keep it open a while, as a server lingering before its close.
			time.Sleep(2 * time.Second)
		})
		e := scriptedEnv(t, u, ca)
		rc := e.dial()
		rc.send("GET /1 HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n")
		if resp, body := rc.read("GET"); resp.StatusCode != 200 || body != "hello /1" {
			t.Fatalf("first: %d %q", resp.StatusCode, body)
		}
		<-sent408
		other := e.dial()
		other.send("GET /2 HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n")
		if resp, body := other.read("GET"); resp.StatusCode != 200 || body != "hello /2" {
			t.Fatalf("next client got %d %q, want its own 200", resp.StatusCode, body)
		}
	})
}

// replayUpstream answers the first request of its first connection and
// then reads the second one and closes without answering, as an upstream
// that processed it and failed; later connections behave.
func replayUpstream(t *testing.T) *scriptedUpstream {
	return newScriptedUpstream(t, nil, func(u *scriptedUpstream, i int, c net.Conn, br *bufio.Reader) {
		if i > 0 {
			serveHello(u, c, br)
			return
		}
		r, err := u.readRequest(br)
		if err != nil {
			return
		}
		hello(c, r)
		u.readRequest(br)
	})
}

func TestNonIdempotentRequestIsNotReplayed(t *testing.T) {
	for _, tc := range []struct {
		req      string
		method   string
		replayed bool
	}{
		{"POST /p HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n", "POST", false},
		{"PATCH /p HTTP/1.1\r\nHost: a.allowed.test\r\nContent-Length: 0\r\n\r\n", "PATCH", false},
		{"POST /p HTTP/1.1\r\nHost: a.allowed.test\r\nIdempotency-Key: k1\r\n\r\n", "POST", true},
		{"GET /g HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n", "GET", true},
	} {
		t.Run(tc.method+fmt.Sprint(tc.replayed), func(t *testing.T) {
			u := replayUpstream(t)
			e := scriptedEnv(t, u, nil)
			rc := e.dial()
			rc.send("GET /first HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n")
			rc.read("GET")
			u.count("GET")
			rc.send(tc.req)
			resp, body := rc.read(tc.method)
			got := u.count(tc.method)
			if tc.replayed {
				if resp.StatusCode != 200 || got != 2 {
					t.Fatalf("got %d %q, upstream saw %d, want a replay on a new connection", resp.StatusCode, body, got)
				}
				return
			}
			if got != 1 {
				t.Fatalf("upstream received the %s %d times, want once", tc.method, got)
			}
			if resp.StatusCode != 502 {
				t.Fatalf("got %d %q, want 502", resp.StatusCode, body)
			}
		})
	}
}

// One client naming a new host in every request (Host: rN.allowed.test)
// must not make egressd keep an upstream socket per host.
func TestOneClientCannotPoolASocketPerHost(t *testing.T) {
	u := newScriptedUpstream(t, nil, func(u *scriptedUpstream, i int, c net.Conn, br *bufio.Reader) {
		serveHello(u, c, br)
	})
	e := scriptedEnv(t, u, nil, func(c *Config) { c.MaxIdlePerClient = 4 })
	rc := e.dial()
	const n = 40
	for i := range n {
		rc.send(fmt.Sprintf("GET /%d HTTP/1.1\r\nHost: r%d.allowed.test\r\n\r\n", i, i))
		if resp, _ := rc.read("GET"); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
	if got := e.p.h1.IdleUpstreams(); got != 4 {
		t.Fatalf("pool holds %d idle connections, want 4", got)
	}
	waitFor(t, func() bool { return u.open.Load() <= 4 })
	if u.conns.Load() != n {
		t.Fatalf("upstream saw %d connections, want %d", u.conns.Load(), n)
	}
}

// The reuse check must not cost the pool its use: a well-behaved upstream
// carries a client's requests on one connection, over TLS too (whose
// session tickets arrive after the handshake).
func TestPooledConnectionIsReused(t *testing.T) {
	withTLS(t, func(t *testing.T, ca *testCA, cert *tls.Certificate) {
		u := newScriptedUpstream(t, cert, func(u *scriptedUpstream, i int, c net.Conn, br *bufio.Reader) {
			serveHello(u, c, br)
		})
		e := scriptedEnv(t, u, ca)
		for i := range 4 {
			rc := e.dial() // a new client each time: the pool is shared
			rc.send(fmt.Sprintf("GET /%d HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n", i))
			if resp, body := rc.read("GET"); resp.StatusCode != 200 || body != fmt.Sprintf("hello /%d", i) {
				t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if n := u.conns.Load(); n != 1 {
			t.Fatalf("upstream saw %d connections for 4 requests, want 1", n)
		}
	})
}

// waitAcked returns once the peer has acknowledged every byte written on c
// (TCP, or TLS over TCP): they are in the peer's socket, where its next read
// or peek finds them. It gives up after 5 s (the test then fails on what the
// peer did not see).
func waitAcked(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		unacked := -1
		rc.Control(func(fd uintptr) { unacked, _ = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) })
		if unacked == 0 {
			return
		}
	}
}
