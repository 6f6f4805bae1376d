package l7

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/egressd/egressd/rules"
)

// reloadable is a rules file read by a real rules.Reloader whose OnReload
// calls Proxy.Redecide, as egressd wires them.
type reloadable struct {
	t    *testing.T
	path string
	r    *rules.Reloader
	p    atomic.Pointer[Proxy]
	cut  chan int // what each Redecide closed
}

func newReloadable(t *testing.T, docs ...string) *reloadable {
	t.Helper()
	rl := &reloadable{t: t, path: filepath.Join(t.TempDir(), "rules.yaml"), cut: make(chan int, 8)}
	rl.write(docs...)
	r, err := rules.NewReloader([]string{rl.path}, rules.ReloaderOptions{OnReload: func(err error) {
		if p := rl.p.Load(); err == nil && p != nil {
			rl.cut <- p.Redecide()
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	rl.r = r
	return rl
}

func (rl *reloadable) write(docs ...string) {
	rl.t.Helper()
	if err := os.WriteFile(rl.path, []byte(strings.Join(docs, "---\n")), 0o644); err != nil {
		rl.t.Fatal(err)
	}
}

// set puts docs in force (as SIGHUP does) and returns how many spliced
// connections Redecide closed.
func (rl *reloadable) set(docs ...string) int {
	rl.t.Helper()
	rl.write(docs...)
	if err := rl.r.Reload(); err != nil {
		rl.t.Fatalf("reload: %v", err)
	}
	select {
	case n := <-rl.cut:
		return n
	default:
		rl.t.Fatal("the reload did not call Redecide")
		return 0
	}
}

func ruleDoc(name, service string, port uint16, proto string) string {
	return fmt.Sprintf("kind: EgressRule\nmetadata: {name: %s}\nspec:\n  destination: {service: %s}\n  ports: [{port: %d, protocol: %s}]\n",
		name, service, port, proto)
}

// echoUpstream is a real upstream that echoes every byte: over TLS (with
// cert), or after answering an upgrade request with 101. ends receives the
// name of each connection that ended at its side: its SNI, or its upgrade
// request's Host.
type echoUpstream struct {
	port uint16
	ends chan string
}

func newEchoUpstream(t *testing.T, cert *tls.Certificate) *echoUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &echoUpstream{port: uint16(ln.Addr().(*net.TCPAddr).Port), ends: make(chan string, 16)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go u.serve(c, cert)
		}
	}()
	return u
}

func (u *echoUpstream) serve(c net.Conn, cert *tls.Certificate) {
	defer c.Close()
	var name string
	var r io.Reader = c
	var w io.Writer = c
	if cert != nil {
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{*cert}})
		if tc.Handshake() != nil {
			return
		}
		name, r, w = tc.ConnectionState().ServerName, tc, tc
	} else {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		name, r = req.Host, br
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	}
	io.Copy(w, r) // until egressd (or the client) ends it
	u.ends <- name
}

// echoes asserts that c is a live connection to an echoUpstream.
func echoes(t *testing.T, c net.Conn, r io.Reader) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "ping"); err != nil {
		t.Fatalf("write: %v", err)
	}
	b := make([]byte, 4)
	if _, err := io.ReadFull(r, b); err != nil || string(b) != "ping" {
		t.Fatalf("echo: %q %v", b, err)
	}
}

// assertCut asserts that c was closed (an end of stream or a reset, not a
// timeout) and that the upstream saw its connection named name end, each
// within a second: the failure bound, not a measurement.
func assertCut(t *testing.T, c net.Conn, r io.Reader, u *echoUpstream, name string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := r.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%s: the client's connection is still open a second after the rule went: %v", name, err)
	}
	select {
	case got := <-u.ends:
		if got != name {
			t.Fatalf("the upstream's connection for %s ended, want %s", got, name)
		}
	case <-time.After(time.Second):
		t.Fatalf("%s: the upstream's connection is still open a second after the rule went", name)
	}
}

// cutOne checks that both connections (kept, cut) echo, puts the rule
// file keep in force, and asserts that the second was cut at both ends
// while the first lives on.
func cutOne(t *testing.T, rl *reloadable, keep string, u *echoUpstream, c [2]net.Conn, r [2]io.Reader) {
	t.Helper()
	echoes(t, c[0], r[0])
	echoes(t, c[1], r[1])
	if n := rl.set(keep); n != 1 {
		t.Fatalf("Redecide closed %d connections, want 1", n)
	}
	assertCut(t, c[1], r[1], u, "cut.allowed.test")
	echoes(t, c[0], r[0])
}

// The three kinds of spliced connection are cut when the rule that allowed
// them goes, and those still allowed live on (issue 12 trigger 5).
func TestReloadCutsSplicedConnections(t *testing.T) {
	ca := newTestCA(t)
	cert := ca.leaf(t, "keep.allowed.test", "cut.allowed.test")
	dialTLS := func(t *testing.T, nc net.Conn, sni string) *tls.Conn {
		tc := tls.Client(nc, &tls.Config{ServerName: sni, RootCAs: ca.pool})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("handshake %s: %v", sni, err)
		}
		return tc
	}

	t.Run("tls passthrough", func(t *testing.T) {
		u := newEchoUpstream(t, &cert)
		keep, cut := ruleDoc("keep", "keep.allowed.test", u.port, "HTTPS"), ruleDoc("cut", "cut.allowed.test", u.port, "HTTPS")
		rl := newReloadable(t, keep, cut)
		e := newEnv(t, Config{Rules: rl.r, OriginalDst: fixedOrig{netip127(u.port)}})
		rl.p.Store(e.p)
		kc, cc := dialTLS(t, e.dial().c, "keep.allowed.test"), dialTLS(t, e.dial().c, "cut.allowed.test")
		cutOne(t, rl, keep, u, [2]net.Conn{kc, cc}, [2]io.Reader{kc, cc})
		mustContain(t, e.logs.String(), "no egress rule allows cut.allowed.test on port")
		if n := e.counter("egressd_connections_cut_total", "reason", "rules_changed"); n != 1 {
			t.Fatalf("cut connections counted: %v", n)
		}
	})

	t.Run("gateway tunnel", func(t *testing.T) {
		u := newEchoUpstream(t, &cert)
		keep, cut := ruleDoc("keep", "keep.allowed.test", u.port, "HTTPS"), ruleDoc("cut", "cut.allowed.test", u.port, "HTTPS")
		rl := newReloadable(t, keep, cut)
		e := newGatewayWith(t, Config{Rules: rl.r, RootCAs: ca.pool})
		rl.p.Store(e.p)
		kc := dialTLS(t, connectTunnel(t, e, fmt.Sprintf("keep.allowed.test:%d", u.port)).c, "keep.allowed.test")
		cc := dialTLS(t, connectTunnel(t, e, fmt.Sprintf("cut.allowed.test:%d", u.port)).c, "cut.allowed.test")
		cutOne(t, rl, keep, u, [2]net.Conn{kc, cc}, [2]io.Reader{kc, cc})
		mustContain(t, e.logs.String(), `"protocol":"connect"`)
	})

	t.Run("websocket", func(t *testing.T) {
		u := newEchoUpstream(t, nil)
		keep, cut := ruleDoc("keep", "keep.allowed.test", u.port, "HTTP"), ruleDoc("cut", "cut.allowed.test", u.port, "HTTP")
		rl := newReloadable(t, keep, cut)
		e := newEnv(t, Config{Rules: rl.r, OriginalDst: fixedOrig{netip127(u.port)}})
		rl.p.Store(e.p)
		upgrade := func(host string) *rawClient {
			rc := e.dial()
			rc.send("GET /ws HTTP/1.1\r\nHost: " + host + "\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
			resp, err := http.ReadResponse(rc.br, &http.Request{Method: "GET"})
			if err != nil || resp.StatusCode != 101 {
				t.Fatalf("upgrade %s: %v %v", host, resp, err)
			}
			return rc
		}
		kc, cc := upgrade("keep.allowed.test"), upgrade("cut.allowed.test")
		cutOne(t, rl, keep, u, [2]net.Conn{kc.c, cc.c}, [2]io.Reader{kc.br, cc.br})
		// The access-log line of the cut connection says why.
		waitForLog(t, e, "closed by egressd: no egress rule allows cut.allowed.test")
	})
}

// A spliced connection outlives no maximum lifetime, when one is set.
func TestMaxSpliceLifetime(t *testing.T) {
	ca := newTestCA(t)
	cert := ca.leaf(t, "keep.allowed.test")
	u := newEchoUpstream(t, &cert)
	e := newEnv(t, Config{Rules: compileRules(t, protoRule("keep", "keep.allowed.test", u.port, rules.HTTPS)),
		OriginalDst: fixedOrig{netip127(u.port)}, MaxSpliceLifetime: 200 * time.Millisecond})
	tc := tls.Client(e.dial().c, &tls.Config{ServerName: "keep.allowed.test", RootCAs: ca.pool})
	echoes(t, tc, tc)
	// Closed at 200 ms; the bound of assertCut (a second) counts from now.
	tc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := tc.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("still open past the maximum lifetime: %v", err)
	}
	select {
	case <-u.ends:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream's connection is still open past the maximum lifetime")
	}
	waitForLog(t, e, "open for the maximum lifetime of spliced connections (200ms)")
	if n := e.counter("egressd_connections_cut_total", "reason", "max_lifetime"); n != 1 {
		t.Fatalf("cut connections counted: %v", n)
	}
}

// An open h2c connection's next stream meets the new rules.
func TestReloadDecidesFutureH2CStreams(t *testing.T) {
	u, _ := newH2CUpstream(t, nil, false)
	keep, gone := ruleDoc("keep", "keep.allowed.test", u.port, "HTTP2"), ruleDoc("gone", "gone.allowed.test", u.port, "HTTP2")
	rl := newReloadable(t, keep, gone)
	e := newEnv(t, Config{Rules: rl.r, OriginalDst: fixedOrig{u.orig()}})
	rl.p.Store(e.p)
	c := oneH2CConn(t, e)
	status := func(host string) int {
		resp, err := c.Get(fmt.Sprintf("http://%s:%d/", host, u.port))
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if a, b := status("keep.allowed.test"), status("gone.allowed.test"); a != 200 || b != 200 {
		t.Fatalf("before the reload: %d %d", a, b)
	}
	u.next(t)
	u.next(t)
	rl.set(keep)
	if a, b := status("keep.allowed.test"), status("gone.allowed.test"); a != 200 || b != 403 {
		t.Fatalf("after the reload, on the same connection: %d %d, want 200 403", a, b)
	}
	if hit := u.next(t); !strings.HasPrefix(hit.Host, "keep.allowed.test") {
		t.Fatalf("upstream saw %s", hit.Host)
	}
	u.none(t)
}

func netip127(port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
}

// scopeAll gives every connection one Scope.
type scopeAll struct{ s Scope }

func (sa scopeAll) Scope(uint64) Scope { return sa.s }

// A scoped connection (Config.Scopes) is re-decided by its scope's rules:
// the global rules allow nothing here, so checking them instead would cut
// the kept connection too.
func TestReloadRedecidesByTheConnectionsScope(t *testing.T) {
	ca := newTestCA(t)
	cert := ca.leaf(t, "keep.allowed.test", "cut.allowed.test")
	u := newEchoUpstream(t, &cert)
	keep, cut := ruleDoc("keep", "keep.allowed.test", u.port, "HTTPS"), ruleDoc("cut", "cut.allowed.test", u.port, "HTTPS")
	rl := newReloadable(t, keep, cut)
	e := newEnv(t, Config{Rules: compileRules(t), Scopes: scopeAll{Scope{Rules: rl.r, Namespace: "team"}},
		OriginalDst: fixedOrig{netip127(u.port)}})
	rl.p.Store(e.p)
	var c [2]net.Conn
	var r [2]io.Reader
	for i, sni := range []string{"keep.allowed.test", "cut.allowed.test"} {
		tc := tls.Client(e.dial().c, &tls.Config{ServerName: sni, RootCAs: ca.pool})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("handshake %s: %v", sni, err)
		}
		c[i], r[i] = tc, tc
	}
	cutOne(t, rl, keep, u, c, r)
	// A new version that still allows it cuts nothing.
	if n := rl.set(keep, ruleDoc("other", "other.allowed.test", u.port, "HTTPS")); n != 0 {
		t.Fatalf("Redecide closed %d connections, want 0", n)
	}
	echoes(t, c[0], r[0])
}

// A reload that marks a host's port HTTPS reaches the next stream on a
// kept h2c connection: the connection's cached upstream (h2cStreams.
// targetFor) is the old rule's, and reusing it would send the stream in
// plaintext where the rules now demand TLS. The upstream here speaks only
// plain h2c: after the reload it must see nothing (the TLS handshake fails
// and the client gets 502).
func TestReloadH2CStreamNotSentByTheOldRule(t *testing.T) {
	u, _ := newH2CUpstream(t, nil, false)
	plain, tls := ruleDoc("api", "api.allowed.test", u.port, "HTTP2"), ruleDoc("api", "api.allowed.test", u.port, "HTTPS")
	rl := newReloadable(t, plain)
	e := newEnv(t, Config{Rules: rl.r, OriginalDst: fixedOrig{u.orig()}})
	rl.p.Store(e.p)
	c := oneH2CConn(t, e)
	status := func() int {
		resp, err := c.Get(fmt.Sprintf("http://api.allowed.test:%d/", u.port))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status(); got != 200 {
		t.Fatalf("before the reload: %d", got)
	}
	u.next(t)
	rl.set(tls)
	if got := status(); got != 502 {
		t.Errorf("after the reload to HTTPS: %d, want 502 (TLS to a plain upstream)", got)
	}
	u.none(t) // no plaintext request after the reload
}

// oneH2CConn is an h2c client whose requests all go on one connection to
// e's proxy (closed at the test's end).
func oneH2CConn(t *testing.T, e *env) *http.Client {
	t.Helper()
	cc, err := (&http2.Transport{AllowHTTP: true}).NewClientConn(e.dial().c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return &http.Client{Transport: cc, Timeout: 10 * time.Second}
}
