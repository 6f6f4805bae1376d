package l7

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/egressd/egressd/rules"
)

// origByClient is an OriginalDstCgroup whose cgroup is the last byte of
// the client's (loopback) address.
type origByClient struct{ dst netip.AddrPort }

func (o origByClient) Lookup(client, local netip.AddrPort) (netip.AddrPort, bool) {
	return o.dst, true
}

func (o origByClient) LookupCgroup(client, _ netip.AddrPort) (netip.AddrPort, uint64, bool) {
	return o.dst, uint64(client.Addr().As4()[3]), true
}

// scopeByCgroup gives each cgroup id its Scope.
type scopeByCgroup map[uint64]Scope

func (s scopeByCgroup) Scope(id uint64) Scope { return s[id] }

// TestPooledConnectionKeepsTheAddressPolicy: a scope whose rule names
// 127.0.0.1 literally may reach a node-local service there; another scope
// allowing every host (and so relying on the address policy) must not get
// that upstream connection from the pool. Asserted at the local service:
// it serves the first scope's request, and the second scope's on the same
// client pattern gets 403 without a new request reaching it.
func TestPooledConnectionKeepsTheAddressPolicy(t *testing.T) {
	ls := newLocalService(t, "127.0.0.1")
	z := newZoneDNS(t, nil)
	trusted := compileRules(t, httpRule("node-cache", "127.0.0.1", ls.port))
	open := compileRules(t, &rules.Rule{Name: "any", Service: "*", Ports: []rules.Port{{Number: ls.port, Protocol: rules.HTTP}}})
	e := newEnv(t, Config{
		Rules:         compileRules(t),
		OriginalDst:   origByClient{netip.AddrPortFrom(testDst, ls.port)},
		Scopes:        scopeByCgroup{7: {Rules: trusted, Namespace: "trusted"}, 8: {Rules: open, Namespace: "open"}},
		Resolver:      z.resolver(),
		AllowUpstream: []netip.Prefix{},
	})
	host := "127.0.0.1:" + strconv.Itoa(int(ls.port))
	get := func(src string) (int, string) {
		rc := e.dialFrom(src)
		rc.send("GET / HTTP/1.1\r\nHost: " + host + "\r\n\r\n") // keep-alive: the upstream connection is pooled
		resp, body := rc.read("GET")
		rc.c.Close()
		return resp.StatusCode, body
	}
	if status, body := get("127.0.0.7"); status != 200 || body != "node secret" {
		t.Fatalf("the trusted scope got %d %q, want the local service's 200", status, body)
	}
	if status, body := get("127.0.0.8"); status != 403 {
		t.Errorf("the open scope got %d %q, want 403: a pooled connection dialled under another scope's allowance served it", status, body)
	}
	if n := ls.accepted.Load(); n != 1 {
		t.Errorf("the local service accepted %d connections, want the trusted scope's 1", n)
	}
}

// TestPooledH2ConnectionKeepsTheAddressPolicy is the same for h2c streams
// and the pooled upstream HTTP/2 connection: the open scope's stream to
// 127.0.0.1 gets 403 and never reaches the local h2c service.
func TestPooledH2ConnectionKeepsTheAddressPolicy(t *testing.T) {
	u, conns := newH2CUpstream(t, nil, false)
	z := newZoneDNS(t, nil)
	rule := func(name, service string) staticRules {
		return compileRules(t, protoRule(name, service, u.port, rules.HTTP2))
	}
	e := newEnv(t, Config{
		Rules:         compileRules(t),
		OriginalDst:   origByClient{netip.AddrPortFrom(testDst, u.port)},
		Scopes:        scopeByCgroup{7: {Rules: rule("node-cache", "127.0.0.1"), Namespace: "trusted"}, 8: {Rules: rule("any", "*"), Namespace: "open"}},
		Resolver:      z.resolver(),
		AllowUpstream: []netip.Prefix{},
	})
	get := func(src string) int {
		tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, _ string, _ *tls.Config) (net.Conn, error) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
			return d.DialContext(ctx, network, e.addr)
		}}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("http://127.0.0.1:" + strconv.Itoa(int(u.port)) + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if status := get("127.0.0.7"); status != 200 {
		t.Fatalf("the trusted scope got %d, want 200", status)
	}
	u.next(t)
	if status := get("127.0.0.8"); status != 403 {
		t.Errorf("the open scope got %d, want 403: a pooled h2 connection dialled under another scope's allowance served it", status)
	}
	u.none(t)
	if n := conns.Load(); n != 1 {
		t.Errorf("the local service accepted %d connections, want the trusted scope's 1", n)
	}
}
