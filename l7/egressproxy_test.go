package l7

import (
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/l7/internal/dialer"
	"github.com/egressd/egressd/rules"
)

// service is an external service on loopback recording what reached it:
// the peer it was connected from, the TLS server name, the request.
type service struct {
	port uint16
	tls  bool
	seen chan serviceHit
}

type serviceHit struct {
	peer   string // IP the connection came from
	sni    string // "" without TLS
	uri    string
	proto  string // HTTP/1.1 or HTTP/2.0
	header http.Header
}

// newService serves HTTP, or HTTPS with cert when cert is not nil.
func newService(t testing.TB, cert *tls.Certificate) *service {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &service{port: uint16(ln.Addr().(*net.TCPAddr).Port), tls: cert != nil, seen: make(chan serviceHit, 64)}
	if cert != nil {
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{*cert}, NextProtos: []string{"h2", "http/1.1"}})
	}
	srv := &http.Server{ErrorLog: log.New(io.Discard, "", 0), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hit := serviceHit{uri: r.RequestURI, proto: r.Proto, header: r.Header.Clone()}
		hit.peer, _, _ = net.SplitHostPort(r.RemoteAddr)
		if r.TLS != nil {
			hit.sni = r.TLS.ServerName
		}
		s.seen <- hit
		fmt.Fprintf(w, "service %s%s", r.Host, r.URL.Path)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

func (s *service) next(t testing.TB) serviceHit {
	t.Helper()
	select {
	case h := <-s.seen:
		return h
	case <-time.After(10 * time.Second):
		t.Fatal("the service received nothing")
		return serviceHit{}
	}
}

func (s *service) none(t testing.TB) {
	t.Helper()
	select {
	case h := <-s.seen:
		t.Fatalf("the service received %s from %s, want nothing", h.uri, h.peer)
	case <-time.After(100 * time.Millisecond):
	}
}

func (s *service) orig() netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), s.port)
}

// viaRule allows service on port with protocol through the egress proxy.
func viaRule(service string, port uint16, proto rules.Protocol) *rules.Rule {
	return &rules.Rule{Name: "via-proxy", Service: service, UseEgressProxy: true,
		Ports: []rules.Port{{Number: port, Protocol: proto}}}
}

// chainEnv is a sidecar proxy whose rule sends svc through egressProxy.
func chainEnv(t *testing.T, svc *service, egressProxy *url.URL, ca *testCA) *env {
	proto := rules.HTTP
	if svc.tls {
		proto = rules.HTTPS
	}
	cfg := Config{
		Rules:       compileRules(t, viaRule("*.allowed.test", svc.port, proto)),
		OriginalDst: fixedOrig{svc.orig()},
		EgressProxy: egressProxy,
	}
	if ca != nil {
		cfg.RootCAs = ca.pool
	}
	return newEnv(t, cfg)
}

// onlyDialed asserts that the proxy dialed nothing but addr, and returns
// how many times it dialed it.
func (e *env) onlyDialed(t testing.TB, addr string) (n int) {
	t.Helper()
	for {
		select {
		case got := <-e.dials:
			if got != addr {
				t.Fatalf("the proxy dialed %s, want only the egress proxy %s", got, addr)
			}
			n++
		default:
			return n
		}
	}
}

// A client-supplied Proxy-Authorization, which must reach no one.
const clientProxyAuth = "Proxy-Authorization: Basic Y2xpZW50OmNsaWVudC1zZWNyZXQ=\r\n"

func TestEgressProxySquidPlainHTTP(t *testing.T) {
	sq := startSquid(t, "a.allowed.test")
	svc := newService(t, nil)
	e := chainEnv(t, svc, sq.url(squidPassword), nil)
	rc := e.dial()
	for i := 0; i < 2; i++ { // the second request reuses the pooled connection to Squid
		rc.send("GET /plain?i=1 HTTP/1.1\r\nHost: a.allowed.test\r\n" + clientProxyAuth + "\r\n")
		resp, body := rc.read("GET")
		if resp.StatusCode != 200 || !strings.HasPrefix(body, "service a.allowed.test") {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
		hit := svc.next(t)
		if hit.peer != squidSource || !strings.Contains(hit.header.Get("Via"), "squid") {
			t.Fatalf("service saw peer %s, Via %q: not through Squid", hit.peer, hit.header.Get("Via"))
		}
		if hit.uri != "/plain?i=1" || hit.header.Get("Proxy-Authorization") != "" {
			t.Fatalf("service saw %s with Proxy-Authorization %q", hit.uri, hit.header.Get("Proxy-Authorization"))
		}
	}
	// Squid logs the authenticated user: our credentials reached it.
	sq.waitLog(t, fmt.Sprintf("GET http://a.allowed.test:%d/plain? %s", svc.port, squidUser)) // Squid logs no query
	if n := e.onlyDialed(t, sq.addr); n != 1 {
		t.Fatalf("%d connections to Squid for 2 requests, want 1 (pooled)", n)
	}
}

func TestEgressProxySquidHTTPSPort(t *testing.T) {
	sq := startSquid(t, "secure.allowed.test")
	ca := newTestCA(t)
	cert := ca.leaf(t, "secure.allowed.test")
	svc := newService(t, &cert)
	e := chainEnv(t, svc, sq.url(squidPassword), ca)
	rc := e.dial()
	for i := 0; i < 2; i++ { // the second request reuses the pooled TLS connection in its tunnel
		rc.send("GET /s HTTP/1.1\r\nHost: secure.allowed.test\r\n" + clientProxyAuth + "\r\n")
		resp, body := rc.read("GET")
		if resp.StatusCode != 200 || body != "service secure.allowed.test/s" {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
		hit := svc.next(t)
		if hit.peer != squidSource || hit.sni != "secure.allowed.test" {
			t.Fatalf("service saw peer %s SNI %q, want Squid's %s and TLS with SNI", hit.peer, hit.sni, squidSource)
		}
		if hit.header.Get("Via") != "" || hit.header.Get("Proxy-Authorization") != "" {
			t.Fatalf("inside the tunnel Squid must see nothing: Via %q, Proxy-Authorization %q",
				hit.header.Get("Via"), hit.header.Get("Proxy-Authorization"))
		}
	}
	if n := e.onlyDialed(t, sq.addr); n != 1 {
		t.Fatalf("%d tunnels through Squid for 2 requests, want 1 (pooled)", n)
	}
	mustContain(t, e.logs.String(), `"upstream":"https"`)
	rc.c.Close()
	e.p.h1.CloseIdle() // Squid logs a CONNECT when its tunnel closes
	sq.waitLog(t, fmt.Sprintf("CONNECT secure.allowed.test:%d %s", svc.port, squidUser))
}

// chainCase is a service behind a rule with useEgressProxy.
type chainCase struct {
	name string
	svc  *service
	host string
}

// chainCases are a plain HTTP service and an HTTPS one (TLS originated,
// certificate from the returned CA).
func chainCases(t *testing.T) (*testCA, []chainCase) {
	ca := newTestCA(t)
	cert := ca.leaf(t, "secure.allowed.test")
	return ca, []chainCase{
		{"plain HTTP", newService(t, nil), "a.allowed.test"},
		{"HTTPS port", newService(t, &cert), "secure.allowed.test"},
	}
}

func TestEgressProxySquidRefusal(t *testing.T) {
	sq := startSquid(t, "a.allowed.test", "secure.allowed.test")
	ca, cases := chainCases(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := chainEnv(t, tc.svc, sq.url("wrong"), ca)
			rc := e.dial()
			rc.send("GET / HTTP/1.1\r\nHost: " + tc.host + "\r\n\r\n")
			resp, body := rc.read("GET")
			if resp.StatusCode != 502 || resp.Header.Get("X-Egressd") != "error" {
				t.Fatalf("got %d %q, want 502", resp.StatusCode, body)
			}
			mustContain(t, body, "egress proxy")
			mustContain(t, body, "407")
			if strings.Contains(body, "wrong") {
				t.Fatalf("the reason leaks the password: %q", body)
			}
			tc.svc.none(t)
			e.onlyDialed(t, sq.addr)
			if n := e.counter("egressd_upstream_errors_total", "kind", "egress_proxy"); n != 1 {
				t.Errorf("egress_proxy errors = %v", n)
			}
		})
	}
}

func TestEgressProxyUnreachableIs502AndNeverDirect(t *testing.T) {
	dead := fmt.Sprintf("127.0.0.1:%d", freePort(t)) // nothing listens
	ca, cases := chainCases(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := chainEnv(t, tc.svc, &url.URL{Scheme: "http", Host: dead}, ca)
			rc := e.dial()
			rc.send("GET / HTTP/1.1\r\nHost: " + tc.host + "\r\n\r\n")
			resp, body := rc.read("GET")
			if resp.StatusCode != 502 {
				t.Fatalf("got %d %q, want 502", resp.StatusCode, body)
			}
			mustContain(t, body, "egress proxy http://"+dead)
			mustContain(t, body, "connection refused")
			tc.svc.none(t)
			e.onlyDialed(t, dead)
		})
	}
}

// recordingProxy is a minimal forward proxy that records the request heads
// it receives and tunnels CONNECTs to 127.0.0.1 (the tests' name resolution).
type recordingProxy struct {
	addr  string
	heads chan *http.Request
}

// newRecordingProxy listens on loopback, behind TLS with cert when cert is
// not nil (an https:// egress proxy).
func newRecordingProxy(t testing.TB, cert *tls.Certificate) *recordingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cert != nil {
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{*cert}, NextProtos: []string{"http/1.1"}})
	}
	rp := &recordingProxy{addr: ln.Addr().String(), heads: make(chan *http.Request, 16)}
	srv := &http.Server{ErrorLog: log.New(io.Discard, "", 0), Handler: http.HandlerFunc(rp.serve)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return rp
}

func (rp *recordingProxy) serve(w http.ResponseWriter, r *http.Request) {
	rp.heads <- r.Clone(r.Context())
	if r.Method != http.MethodConnect {
		fmt.Fprintf(w, "recorded %s", r.RequestURI)
		return
	}
	_, port, _ := net.SplitHostPort(r.Host)
	up, err := net.Dial("tcp", "127.0.0.1:"+port)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		up.Close()
		return
	}
	io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
	done := make(chan struct{})
	go func() { io.Copy(up, brw); up.(*net.TCPConn).CloseWrite(); close(done) }()
	io.Copy(c, up)
	c.Close()
	<-done
	up.Close()
}

func TestEgressProxyRequestForm(t *testing.T) {
	rp := newRecordingProxy(t, nil)
	ca := newTestCA(t)
	cert := ca.leaf(t, "secure.allowed.test")
	want := "Basic " + "dTpwQHNz" // u:p@ss
	proxyURL := &url.URL{Scheme: "http", Host: rp.addr, User: url.UserPassword("u", "p@ss")}

	t.Run("plain HTTP in absolute form with the port", func(t *testing.T) {
		svc := newService(t, nil)
		e := chainEnv(t, svc, proxyURL, nil)
		rc := e.dial()
		rc.send("GET /x?q=1 HTTP/1.1\r\nHost: a.allowed.test\r\n" + clientProxyAuth + "\r\n")
		resp, body := rc.read("GET")
		wantURI := fmt.Sprintf("http://a.allowed.test:%d/x?q=1", svc.port)
		if resp.StatusCode != 200 || body != "recorded "+wantURI {
			t.Fatalf("got %d %q, want the request %s", resp.StatusCode, body, wantURI)
		}
		head := <-rp.heads
		if got := head.Header.Values("Proxy-Authorization"); len(got) != 1 || got[0] != want {
			t.Fatalf("egress proxy got Proxy-Authorization %q, want only [%q]", got, want)
		}
	})
	t.Run("HTTPS port through CONNECT", func(t *testing.T) {
		svc := newService(t, &cert)
		e := chainEnv(t, svc, proxyURL, ca)
		rc := e.dial()
		rc.send("GET /t HTTP/1.1\r\nHost: secure.allowed.test\r\n" + clientProxyAuth + "\r\n")
		if resp, body := rc.read("GET"); resp.StatusCode != 200 {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
		head := <-rp.heads
		if head.Method != http.MethodConnect || head.Host != fmt.Sprintf("secure.allowed.test:%d", svc.port) ||
			head.Header.Get("Proxy-Authorization") != want {
			t.Fatalf("egress proxy got %s %s with Proxy-Authorization %q", head.Method, head.Host, head.Header.Get("Proxy-Authorization"))
		}
		if hit := svc.next(t); hit.sni != "secure.allowed.test" || hit.header.Get("Proxy-Authorization") != "" {
			t.Fatalf("service saw SNI %q, Proxy-Authorization %q", hit.sni, hit.header.Get("Proxy-Authorization"))
		}
	})
}

// An https:// egress proxy: TLS to the proxy (verified), and for HTTPS
// ports TLS to the service inside it.
func TestEgressProxyOverTLS(t *testing.T) {
	ca, cases := chainCases(t)
	proxyCert := ca.leaf(t, "proxy.test")
	rp := newRecordingProxy(t, &proxyCert)
	_, port, _ := net.SplitHostPort(rp.addr)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := chainEnv(t, tc.svc, &url.URL{Scheme: "https", Host: "proxy.test:" + port, User: url.User("u")}, ca)
			rc := e.dial()
			rc.send("GET /tls HTTP/1.1\r\nHost: " + tc.host + "\r\n\r\n")
			resp, body := rc.read("GET")
			if resp.StatusCode != 200 {
				t.Fatalf("got %d %q", resp.StatusCode, body)
			}
			head := <-rp.heads
			if head.TLS == nil || head.TLS.ServerName != "proxy.test" || head.Header.Get("Proxy-Authorization") != "Basic dTo=" {
				t.Fatalf("egress proxy saw TLS %v, Proxy-Authorization %q", head.TLS != nil, head.Header.Get("Proxy-Authorization"))
			}
			if tc.svc.tls {
				if hit := tc.svc.next(t); hit.sni != tc.host {
					t.Fatalf("service saw SNI %q", hit.sni)
				}
			}
		})
	}
	t.Run("untrusted proxy certificate", func(t *testing.T) {
		e := chainEnv(t, cases[0].svc, &url.URL{Scheme: "https", Host: "elsewhere.test:" + port}, ca)
		rc := e.dial()
		rc.send("GET / HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n")
		resp, body := rc.read("GET")
		if resp.StatusCode != 502 || !strings.Contains(body, "egress proxy https://elsewhere.test") {
			t.Fatalf("got %d %q, want 502 from the egress proxy's TLS", resp.StatusCode, body)
		}
	})
}

// TestEgressProxyOverTLSToAnIPLiteral: an https://IP egress proxy must
// present a certificate naming that IP; one for another name gets nothing,
// least of all the Proxy-Authorization.
func TestEgressProxyOverTLSToAnIPLiteral(t *testing.T) {
	ca, cases := chainCases(t)
	for _, tc := range []struct {
		name string
		cert tls.Certificate
		ok   bool
	}{
		{"certificate for another name", ca.leaf(t, "proxy.test"), false},
		{"IP SAN", ca.leaf(t, "127.0.0.1"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rp := newRecordingProxy(t, &tc.cert)
			e := chainEnv(t, cases[0].svc, &url.URL{Scheme: "https", Host: rp.addr, User: url.UserPassword("u", "secret")}, ca)
			rc := e.dial()
			rc.send("GET / HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n")
			resp, body := rc.read("GET")
			if !tc.ok {
				if resp.StatusCode != 502 || !strings.Contains(body, "certificate") {
					t.Fatalf("got %d %q, want 502 for the egress proxy's certificate", resp.StatusCode, body)
				}
				select {
				case h := <-rp.heads:
					t.Fatalf("the egress proxy got a request (%s %s)", h.Method, h.URL)
				default:
				}
				return
			}
			if resp.StatusCode != 200 {
				t.Fatalf("got %d %q", resp.StatusCode, body)
			}
			if h := <-rp.heads; h.Header.Get("Proxy-Authorization") == "" {
				t.Fatal("the egress proxy got no Proxy-Authorization")
			}
		})
	}
}

func TestEgressProxyURLChecked(t *testing.T) {
	for _, raw := range []string{"socks5://p:1080", "http://", "http://p:3128/path", "http://p:3128?x=1"} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		_, err = New(Config{Rules: compileRules(t), OriginalDst: fixedOrig{}, EgressProxy: u})
		if err == nil || !strings.Contains(err.Error(), "egress proxy") {
			t.Errorf("%s: New error %v, want one about the egress proxy", raw, err)
		}
	}
}

func TestCheckEgressProxy(t *testing.T) {
	set := compileRules(t, viaRule("a.test", 80, rules.HTTP), httpRule("direct", "b.test", 80)).set
	err := CheckEgressProxy(set, nil)
	if err == nil || !strings.Contains(err.Error(), "via-proxy") || !strings.Contains(err.Error(), "--egress-proxy") {
		t.Fatalf("CheckEgressProxy without a proxy: %v", err)
	}
	if err := CheckEgressProxy(set, &url.URL{Scheme: "http", Host: "squid:3128"}); err != nil {
		t.Fatalf("with a proxy: %v", err)
	}
	if err := CheckEgressProxy(compileRules(t, httpRule("direct", "b.test", 80)).set, nil); err != nil {
		t.Fatalf("no rule needs one: %v", err)
	}
}

// flakyFront stands for a Service in front of gateway replicas, one of
// which is going away: the first bad connections it accepts are reset
// before a byte is read (what a terminating gateway's backlog gets), the
// others are relayed to the replica at to. A bad connection is reset once
// its first bytes arrived: the request was sent and got no answer, as from
// a replica that died with it.
func flakyFront(t *testing.T, bad int, to string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for n := 0; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if n < bad {
				c.Read(make([]byte, 1))
				c.(*net.TCPConn).SetLinger(0)
				c.Close() // RST
				continue
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", to)
				if err != nil {
					return
				}
				defer up.Close()
				go func() { io.Copy(up, c); up.(*net.TCPConn).CloseWrite() }()
				io.Copy(c, up)
			}()
		}
	}()
	return ln.Addr().String()
}

// TestEgressProxyReplicaGoneIsRetried: a new connection to the egress
// proxy reset before it answered (a gateway replica going away) is tried
// again on another connection to the egress proxy, and the request
// arrives through the proxy; when every try is reset, the client gets 502
// and nothing was dialled but the egress proxy: never a direct connection.
func TestEgressProxyReplicaGoneIsRetried(t *testing.T) {
	rp := newRecordingProxy(t, nil)
	ca, cases := chainCases(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			front := flakyFront(t, 1, rp.addr)
			e := chainEnv(t, tc.svc, &url.URL{Scheme: "http", Host: front}, ca)
			rc := e.dial()
			rc.send("GET /retried HTTP/1.1\r\nHost: " + tc.host + "\r\n\r\n")
			resp, body := rc.read("GET")
			if resp.StatusCode != 200 {
				t.Fatalf("got %d %q, want 200 through the second connection", resp.StatusCode, body)
			}
			if head := <-rp.heads; !strings.HasSuffix(head.RequestURI, "/retried") && head.Method != http.MethodConnect {
				t.Fatalf("the egress proxy saw %s %s", head.Method, head.RequestURI)
			}
			if tc.svc.tls { // the recording proxy answers plain HTTP itself and tunnels CONNECTs
				if hit := tc.svc.next(t); hit.uri != "/retried" {
					t.Fatalf("service saw %+v", hit)
				}
			}
			if n := e.onlyDialed(t, front); n != 2 {
				t.Errorf("dialled the egress proxy %d times, want 2", n)
			}
			if n := e.counter("egressd_egress_proxy_retries_total"); n != 1 {
				t.Errorf("egressd_egress_proxy_retries_total = %v, want 1", n)
			}
		})
		t.Run(tc.name+" every try reset", func(t *testing.T) {
			front := flakyFront(t, 1000, rp.addr)
			e := chainEnv(t, tc.svc, &url.URL{Scheme: "http", Host: front}, ca)
			rc := e.dial()
			rc.send("GET / HTTP/1.1\r\nHost: " + tc.host + "\r\n\r\n")
			resp, body := rc.read("GET")
			if resp.StatusCode != 502 {
				t.Fatalf("got %d %q, want 502", resp.StatusCode, body)
			}
			tc.svc.none(t)
			if n := e.onlyDialed(t, front); n < 2 || n > dialer.EgressProxyAttempts {
				t.Errorf("dialled the egress proxy %d times, want 2 to %d", n, dialer.EgressProxyAttempts)
			}
		})
	}
	t.Run("POST with a body is not replayed", func(t *testing.T) {
		front := flakyFront(t, 1, rp.addr)
		e := chainEnv(t, cases[0].svc, &url.URL{Scheme: "http", Host: front}, ca)
		rc := e.dial()
		rc.send("POST / HTTP/1.1\r\nHost: a.allowed.test\r\nContent-Length: 2\r\n\r\nhi")
		if resp, body := rc.read("POST"); resp.StatusCode != 502 {
			t.Fatalf("got %d %q, want 502 (a body is never sent twice)", resp.StatusCode, body)
		}
		select {
		case head := <-rp.heads:
			t.Fatalf("the POST reached the egress proxy again: %s %s", head.Method, head.RequestURI)
		default:
		}
		if n := e.onlyDialed(t, front); n != 1 {
			t.Errorf("dialled the egress proxy %d times, want 1", n)
		}
	})
}
