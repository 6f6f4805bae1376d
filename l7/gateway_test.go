package l7

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/rules"
)

// gatewaySource is the address the test gateway connects to upstreams
// from, so that a service can tell the gateway's connections apart.
const gatewaySource = "127.0.0.3"

// gatewayDial resolves every name to 127.0.0.1 and connects from
// gatewaySource.
func gatewayDial(ctx context.Context, network, addr string) (net.Conn, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(gatewaySource)}}
	return d.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
}

// newGateway runs ServeGateway for a proxy with rs (and RootCAs from ca);
// e.addr is the gateway's address. It stops on cleanup.
func newGateway(t testing.TB, ca *testCA, rs ...*rules.Rule) *env {
	t.Helper()
	cfg := Config{Rules: compileRules(t, rs...)}
	if ca != nil {
		cfg.RootCAs = ca.pool
	}
	return newGatewayWith(t, cfg)
}

// newGatewayWith is newGateway for a Config with its Rules (and any other
// field) set; OriginalDst is the gateway tests', and so is Dial unless the
// Config has a Resolver (then the default dialer uses it).
func newGatewayWith(t testing.TB, cfg Config) *env {
	t.Helper()
	cfg.OriginalDst = fixedOrig{}
	if cfg.Resolver == nil {
		cfg.Dial = gatewayDial
	}
	e := newEnv(t, cfg) // its sidecar listener closes every connection (no original destination)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- e.p.ServeGateway(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.p.Shutdown(ctx)
		if err := <-served; !errors.Is(err, ErrProxyClosed) {
			t.Errorf("ServeGateway returned %v, want ErrProxyClosed", err)
		}
	})
	return e
}

// gatewayClient is a Go HTTP client using the gateway as its proxy, with
// credentials, trusting ca.
func gatewayClient(e *env, ca *testCA) *http.Client {
	proxy := &url.URL{Scheme: "http", Host: e.addr, User: url.UserPassword("client", "client-secret")}
	tr := &http.Transport{Proxy: http.ProxyURL(proxy), TLSClientConfig: &tls.Config{RootCAs: ca.pool}}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func get(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestGatewayForwardsAbsoluteFormAndTunnelsConnect(t *testing.T) {
	ca := newTestCA(t)
	cert := ca.leaf(t, "secure.allowed.test")
	plain, secure := newService(t, nil), newService(t, &cert)
	e := newGateway(t, ca, httpRule("plain", "*.allowed.test", plain.port),
		&rules.Rule{Name: "secure", Service: "secure.allowed.test", Ports: []rules.Port{{Number: secure.port, Protocol: rules.HTTPS}}})
	c := gatewayClient(e, ca)
	defer c.CloseIdleConnections()

	// http:// URL: the client sends the absolute form.
	code, body := get(t, c, fmt.Sprintf("http://a.allowed.test:%d/p", plain.port))
	if code != 200 || !strings.HasPrefix(body, "service a.allowed.test") {
		t.Fatalf("absolute form: %d %q", code, body)
	}
	hit := plain.next(t)
	if hit.peer != gatewaySource || hit.uri != "/p" || hit.header.Get("Proxy-Authorization") != "" {
		t.Fatalf("service saw %s from %s with Proxy-Authorization %q", hit.uri, hit.peer, hit.header.Get("Proxy-Authorization"))
	}
	// https:// URL: CONNECT, then the client's own TLS end to end.
	code, body = get(t, c, fmt.Sprintf("https://secure.allowed.test:%d/s", secure.port))
	if code != 200 || body != "service secure.allowed.test:"+fmt.Sprint(secure.port)+"/s" {
		t.Fatalf("CONNECT: %d %q", code, body)
	}
	if hit := secure.next(t); hit.peer != gatewaySource || hit.sni != "secure.allowed.test" {
		t.Fatalf("service saw peer %s SNI %q", hit.peer, hit.sni)
	}
	c.CloseIdleConnections() // ends the tunnel: its access-log line follows
	waitFor(t, func() bool {
		return e.counter("egressd_requests_total", "protocol", "connect", "decision", "allow") == 1
	})
	mustContain(t, e.logs.String(), `"protocol":"connect","upstream":"tunnel","rule":"secure"`)
}

func TestGatewayCurlConnect(t *testing.T) {
	bin, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed (apt-get install curl)")
	}
	ca := newTestCA(t)
	cert := ca.leaf(t, "secure.allowed.test")
	secure := newService(t, &cert)
	e := newGateway(t, ca, &rules.Rule{Name: "secure", Service: "secure.allowed.test",
		Ports: []rules.Port{{Number: secure.port, Protocol: rules.HTTPS}}})
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}), 0o644)
	for _, tc := range []struct {
		url  string
		want string
	}{
		{fmt.Sprintf("https://secure.allowed.test:%d/c", secure.port), "200"},
		{fmt.Sprintf("https://evil.test:%d/", secure.port), "403"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, _ := exec.CommandContext(ctx, bin, "-sS", "-x", "http://"+e.addr, "--cacert", caFile,
			"-o", "/dev/null", "-w", "%{http_connect}", tc.url).Output()
		cancel()
		if string(out) != tc.want {
			t.Errorf("curl -x gateway %s: CONNECT answered %q, want %s", tc.url, out, tc.want)
		}
	}
	if hit := secure.next(t); hit.sni != "secure.allowed.test" {
		t.Fatalf("service saw SNI %q", hit.sni)
	}
	secure.none(t)
}

func TestGatewayRefusesEverythingElse(t *testing.T) {
	svc := newService(t, nil)
	e := newGateway(t, nil, httpRule("plain", "a.allowed.test", svc.port))
	gw := e.addr // where a request naming no target went
	cases := []struct {
		name, req string
		status    int
		origDst   string // in the access log: the target asked for, else the gateway
	}{
		{"CONNECT to a host outside the rules", "CONNECT evil.test:443 HTTP/1.1\r\nHost: evil.test:443\r\n\r\n", 403, "evil.test:443"},
		{"CONNECT to a port outside the rules", "CONNECT a.allowed.test:1 HTTP/1.1\r\nHost: a.allowed.test:1\r\n\r\n", 403, "a.allowed.test:1"},
		{"CONNECT by IP", fmt.Sprintf("CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", svc.port), 403, fmt.Sprintf("127.0.0.1:%d", svc.port)},
		{"absolute form to a denied host", "GET http://evil.test/ HTTP/1.1\r\nHost: evil.test\r\n\r\n", 403, "evil.test:80"},
		{"absolute form to a denied port", "GET http://a.allowed.test/ HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n", 403, "a.allowed.test:80"},
		{"origin form", fmt.Sprintf("GET / HTTP/1.1\r\nHost: a.allowed.test:%d\r\n\r\n", svc.port), 403, gw},
		{"CONNECT without a port", "CONNECT a.allowed.test HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n", 400, gw},
		{"absolute form with a bad port", "GET http://a.allowed.test:99999/ HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n", 400, gw},
		{"CONNECT with a body", fmt.Sprintf("CONNECT a.allowed.test:%d HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", svc.port), 400, gw},
		{"unreadable head", "GET http://a.allowed.test/ HTTP/1.1\nHost: a.allowed.test\n\n", 400, gw},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rc := e.dial()
			rc.send(tc.req)
			method, _, _ := strings.Cut(tc.req, " ")
			resp, body := rc.read(method)
			if resp.StatusCode != tc.status || resp.Header.Get("X-Egressd") == "" {
				t.Fatalf("got %d %q, want %d from egressd", resp.StatusCode, body, tc.status)
			}
			logs := strings.Split(strings.TrimSpace(e.logs.String()), "\n")
			mustContain(t, logs[len(logs)-1], `"msg":"request"`)
			mustContain(t, logs[len(logs)-1], `"orig_dst":"`+tc.origDst+`"`)
		})
	}
	svc.none(t)
	if n := e.counter("egressd_requests_total", "decision", "deny", "protocol", "connect"); n != 3 {
		t.Errorf("denied CONNECTs counted: %v, want 3", n)
	}
}

// The sidecar chains through the gateway: a second, independent check.
func TestSidecarThroughGateway(t *testing.T) {
	ca, cases := chainCases(t)
	// The gateway shares the sidecar's rules, useEgressProxy included: it is
	// the egress proxy, so it serves them directly.
	gw := newGateway(t, ca, viaRule("a.allowed.test", cases[0].svc.port, rules.HTTP),
		viaRule("secure.allowed.test", cases[1].svc.port, rules.HTTPS))
	gwNone := newGateway(t, ca) // allows nothing
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := chainEnv(t, tc.svc, &url.URL{Scheme: "http", Host: gw.addr, User: url.UserPassword("u", "p")}, ca)
			rc := e.dial()
			rc.send("GET /chained HTTP/1.1\r\nHost: " + tc.host + "\r\n" + clientProxyAuth + "\r\n")
			if resp, body := rc.read("GET"); resp.StatusCode != 200 {
				t.Fatalf("got %d %q", resp.StatusCode, body)
			}
			hit := tc.svc.next(t)
			if hit.peer != gatewaySource || hit.uri != "/chained" || hit.header.Get("Proxy-Authorization") != "" {
				t.Fatalf("service saw %s from %s, Proxy-Authorization %q", hit.uri, hit.peer, hit.header.Get("Proxy-Authorization"))
			}
			if tc.svc.tls && hit.sni != tc.host {
				t.Fatalf("service saw SNI %q", hit.sni)
			}
			e.onlyDialed(t, gw.addr)

			// A gateway whose rules do not allow it refuses, whatever the sidecar allows.
			e2 := chainEnv(t, tc.svc, &url.URL{Scheme: "http", Host: gwNone.addr}, ca)
			rc = e2.dial()
			rc.send("GET / HTTP/1.1\r\nHost: " + tc.host + "\r\n\r\n")
			resp, body := rc.read("GET")
			if resp.StatusCode != 403 && resp.StatusCode != 502 {
				t.Fatalf("through a refusing gateway: %d %q", resp.StatusCode, body)
			}
			mustContain(t, body, "egress")
			tc.svc.none(t)
		})
	}
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met within 5s")
}

// The gateway served over TLS (egressd gateway --tls-cert/--tls-key): the
// agent's --egress-proxy https://… encrypts the hop to the gateway too,
// Proxy-Authorization included.
func TestSidecarThroughGatewayOverTLS(t *testing.T) {
	ca, cases := chainCases(t)
	gw := newGateway(t, ca, viaRule("a.allowed.test", cases[0].svc.port, rules.HTTP),
		viaRule("secure.allowed.test", cases[1].svc.port, rules.HTTPS))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gwCert := ca.leaf(t, "gateway.test")
	tln := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{gwCert}, NextProtos: []string{"http/1.1"}})
	served := make(chan error, 1)
	go func() { served <- gw.p.ServeGateway(tln) }()
	t.Cleanup(func() {
		gw.p.Shutdown(context.Background())
		<-served
	})
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := chainEnv(t, tc.svc, &url.URL{Scheme: "https", Host: "gateway.test:" + port, User: url.UserPassword("u", "p")}, ca)
			rc := e.dial()
			rc.send("GET /over-tls HTTP/1.1\r\nHost: " + tc.host + "\r\n\r\n")
			if resp, body := rc.read("GET"); resp.StatusCode != 200 {
				t.Fatalf("got %d %q", resp.StatusCode, body)
			}
			if hit := tc.svc.next(t); hit.peer != gatewaySource || hit.uri != "/over-tls" {
				t.Fatalf("service saw %s from %s", hit.uri, hit.peer)
			}
		})
	}
}

// A CONNECT to an allowed name cannot carry a TLS handshake for another.
func TestGatewayTunnelChecksTheTLSServerName(t *testing.T) {
	ca := newTestCA(t)
	cert := ca.leaf(t, "secure.allowed.test", "evil.test")
	svc := newService(t, &cert)
	e := newGateway(t, ca, &rules.Rule{Name: "secure", Service: "secure.allowed.test",
		Ports: []rules.Port{{Number: svc.port, Protocol: rules.HTTPS}}})
	for _, tc := range []struct {
		sni string
		ok  bool
	}{{"secure.allowed.test", true}, {"evil.test", false}} {
		rc := e.dial()
		rc.send(fmt.Sprintf("CONNECT secure.allowed.test:%d HTTP/1.1\r\nHost: secure.allowed.test\r\n\r\n", svc.port))
		if resp, err := http.ReadResponse(rc.br, &http.Request{Method: "CONNECT"}); err != nil || resp.StatusCode != 200 {
			t.Fatalf("CONNECT: %v %v", resp, err)
		}
		tc := tc
		c := &http.Client{Transport: &http.Transport{
			DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				conn := tls.Client(rc.c, &tls.Config{ServerName: tc.sni, RootCAs: ca.pool})
				return conn, conn.HandshakeContext(ctx)
			},
		}, Timeout: 5 * time.Second}
		resp, err := c.Get("https://" + tc.sni + "/")
		if tc.ok != (err == nil) {
			t.Fatalf("SNI %s through a tunnel to secure.allowed.test: %v", tc.sni, err)
		}
		if err == nil {
			resp.Body.Close()
			svc.next(t)
		}
		c.CloseIdleConnections()
	}
	// A hello without SNI in a tunnel is refused too, as in passthrough.
	rc := e.dial()
	rc.send(fmt.Sprintf("CONNECT secure.allowed.test:%d HTTP/1.1\r\nHost: secure.allowed.test\r\n\r\n", svc.port))
	if resp, err := http.ReadResponse(rc.br, &http.Request{Method: "CONNECT"}); err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	err := tls.Client(rc.c, &tls.Config{InsecureSkipVerify: true}).Handshake()
	if err == nil || !strings.Contains(err.Error(), "unrecognized name") {
		t.Fatalf("no SNI through a tunnel: %v, want the unrecognized_name alert", err)
	}
	svc.none(t)
	mustContain(t, e.logs.String(), "no rule allows the TLS server name evil.test")
	mustContain(t, e.logs.String(), "tunnel: tls client hello without server name (SNI)")
}
