package l7

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/rules"
)

// h2c (prior knowledge) through Squid: a CONNECT tunnel carrying HTTP/2.
func TestEgressProxySquidH2C(t *testing.T) {
	sq := startSquid(t, "api.allowed.test")
	u, _ := newH2CUpstream(t, nil, false)
	e := newEnv(t, Config{
		Rules:       compileRules(t, viaRule("api.allowed.test", u.port, rules.HTTP2)),
		OriginalDst: fixedOrig{u.orig()},
		EgressProxy: sq.url(squidPassword),
	})
	c, _ := h2cClient(t, e)
	resp, err := c.Get(fmt.Sprintf("http://api.allowed.test:%d/h2", u.port))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := u.next(t); resp.StatusCode != 200 || got.Proto != "HTTP/2.0" || got.URI != "/h2" {
		t.Fatalf("got %d, upstream saw %s %s", resp.StatusCode, got.Proto, got.URI)
	}
	e.onlyDialed(t, sq.addr)
	// Squid logs a CONNECT when its tunnel closes.
	sq.waitLog(t, fmt.Sprintf("CONNECT api.allowed.test:%d %s", u.port, squidUser), e.p.h2.CloseIdle)
}

// squidHTTPSEnv is a sidecar sending secure.allowed.test (an HTTPS port of
// svc, certificate from ca) through a Squid.
func squidHTTPSEnv(t *testing.T) (*squid, *service, *env, *testCA) {
	sq := startSquid(t, "secure.allowed.test")
	ca := newTestCA(t)
	cert := ca.leaf(t, "secure.allowed.test")
	svc := newService(t, &cert)
	e := newEnv(t, Config{
		Rules:       compileRules(t, viaRule("secure.allowed.test", svc.port, rules.HTTPS)),
		OriginalDst: fixedOrig{svc.orig()},
		EgressProxy: sq.url(squidPassword),
		RootCAs:     ca.pool,
	})
	return sq, svc, e, ca
}

// h2c from the app to an HTTPS-marked port: HTTP/2 over TLS (ALPN h2)
// originated by egressd inside a CONNECT tunnel through Squid.
func TestEgressProxySquidH2OverTLS(t *testing.T) {
	sq, svc, e, _ := squidHTTPSEnv(t)
	c, _ := h2cClient(t, e)
	resp, err := c.Get(fmt.Sprintf("http://secure.allowed.test:%d/h2tls", svc.port))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	hit := svc.next(t)
	if resp.StatusCode != 200 || hit.proto != "HTTP/2.0" || hit.sni != "secure.allowed.test" || hit.peer != squidSource {
		t.Fatalf("got %d; service saw %s %s from %s with SNI %q", resp.StatusCode, hit.proto, hit.uri, hit.peer, hit.sni)
	}
	e.onlyDialed(t, sq.addr)
}

// The app's own TLS (passthrough by SNI) through Squid: egressd never
// decrypts, Squid sees only the CONNECT, the service the app's handshake.
func TestEgressProxySquidTLSPassthrough(t *testing.T) {
	sq, svc, e, ca := squidHTTPSEnv(t)
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.pool},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, e.addr) // as if redirected
		},
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := c.Get(fmt.Sprintf("https://secure.allowed.test:%d/pt", svc.port))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	hit := svc.next(t)
	if resp.StatusCode != 200 || hit.peer != squidSource || hit.sni != "secure.allowed.test" || hit.uri != "/pt" {
		t.Fatalf("got %d; service saw %s from %s with SNI %q", resp.StatusCode, hit.uri, hit.peer, hit.sni)
	}
	e.onlyDialed(t, sq.addr)
	tr.CloseIdleConnections()
	sq.waitLog(t, fmt.Sprintf("CONNECT secure.allowed.test:%d %s", svc.port, squidUser))
}

// h2c with an unreachable egress proxy: 502 from egressd, nothing direct.
func TestEgressProxyUnreachableH2C(t *testing.T) {
	dead := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	u, conns := newH2CUpstream(t, nil, false)
	e := newEnv(t, Config{
		Rules:       compileRules(t, viaRule("api.allowed.test", u.port, rules.HTTP2)),
		OriginalDst: fixedOrig{u.orig()},
		EgressProxy: &url.URL{Scheme: "http", Host: dead},
	})
	c, _ := h2cClient(t, e)
	resp, err := c.Get(fmt.Sprintf("http://api.allowed.test:%d/h2", u.port))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 502 || !strings.Contains(string(body), "egress proxy http://"+dead) {
		t.Fatalf("got %d %q, want 502 naming the egress proxy", resp.StatusCode, body)
	}
	if n := conns.Load(); n != 0 {
		t.Fatalf("the upstream got %d connections", n)
	}
	e.onlyDialed(t, dead)
}
