package l7

import (
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/egressd/egressd/rules"
)

// connectTunnel opens a client connection to the gateway e and asks it for
// a tunnel to target; the gateway must answer 200.
func connectTunnel(t *testing.T, e *env, target string) *rawClient {
	t.Helper()
	rc := e.dial()
	rc.send("CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n\r\n")
	resp, err := http.ReadResponse(rc.br, &http.Request{Method: "CONNECT"})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT %s: %v %v", target, resp, err)
	}
	return rc
}

// Trigger 3 of issue 12: a plain-HTTP CONNECT tunnel to an allowed name
// cannot carry a request for another host (domain fronting, CDN tenants):
// every request inside is decided on its Host, as on the agent, and dialled
// through the same address policy. A real DNS server answers both names
// with the upstream's address (a CDN serving both), so a request that got
// through would be recorded there.
func TestGatewayTunnelDecidesEveryHTTPRequest(t *testing.T) {
	u := newUpstream(t, nil)
	z := newZoneDNS(t, map[string][]netip.Addr{
		"api.allowed.test.":   {netip.MustParseAddr("127.0.0.1")},
		"evil.example.":       {netip.MustParseAddr("127.0.0.1")},
		"local.allowed.test.": {netip.MustParseAddr("127.0.0.2")}, // loopback the operator did not allow
	})
	e := newGatewayWith(t, Config{Rules: compileRules(t, httpRule("api", "*.allowed.test", u.port)),
		Resolver: z.resolver(), AllowUpstream: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	target := fmt.Sprintf("api.allowed.test:%d", u.port)

	rc := connectTunnel(t, e, target)
	rc.send("GET /fronted HTTP/1.1\r\nHost: evil.example\r\n\r\n")
	resp, body := rc.read("GET")
	if resp.StatusCode != 403 || resp.Header.Get("X-Egressd") == "" {
		t.Fatalf("denied Host inside an allowed tunnel: %d %q, want egressd's 403", resp.StatusCode, body)
	}
	mustContain(t, body, fmt.Sprintf("egressd: no egress rule allows evil.example on port %d", u.port))
	u.none(t)

	// The same tunnel goes on: an allowed request reaches the upstream.
	rc.send("GET /allowed HTTP/1.1\r\nHost: api.allowed.test\r\n\r\n")
	if resp, body := rc.read("GET"); resp.StatusCode != 200 {
		t.Fatalf("allowed Host inside the tunnel: %d %q", resp.StatusCode, body)
	}
	if hit := u.next(t); hit.Host != "api.allowed.test" || hit.URI != "/allowed" {
		t.Fatalf("upstream saw Host %q %s", hit.Host, hit.URI)
	}
	// An allowed name inside the tunnel meets the address policy.
	rc.send("GET /local HTTP/1.1\r\nHost: local.allowed.test\r\n\r\n")
	resp, body = rc.read("GET")
	if resp.StatusCode != 403 {
		t.Fatalf("a name resolving to loopback inside the tunnel: %d %q", resp.StatusCode, body)
	}
	mustContain(t, body, "egressd: upstream address 127.0.0.2 of local.allowed.test refused: loopback")
	// A request pipelined behind the CONNECT head, in one write, is decided too.
	rc2 := e.dial()
	rc2.send("CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n\r\nGET /pipelined HTTP/1.1\r\nHost: evil.example\r\n\r\n")
	if resp, err := http.ReadResponse(rc2.br, &http.Request{Method: "CONNECT"}); err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	if resp, body := rc2.read("GET"); resp.StatusCode != 403 {
		t.Fatalf("pipelined denied request: %d %q", resp.StatusCode, body)
	}
	u.none(t)
	logs := e.logs.String()
	mustContain(t, logs, `"protocol":"connect","upstream":"requests","rule":"api"`)
	mustContain(t, logs, `"orig_dst":"`+target+`","host":"evil.example"`)
	if n := e.counter("egressd_requests_total", "decision", "deny", "protocol", "http/1.1"); n != 2 {
		t.Errorf("denied requests inside tunnels counted: %v, want 2", n)
	}
}

// The same for h2c inside a tunnel (how agents send HTTP2 and GRPC ports
// through the gateway): each stream is decided on its :authority, on one
// connection, the denied one never reaching the upstream.
func TestGatewayTunnelDecidesEveryH2CStream(t *testing.T) {
	u, _ := newH2CUpstream(t, nil, false)
	e := newGateway(t, nil, protoRule("h2-api", "api.allowed.test", u.port, rules.HTTP2))
	rc := connectTunnel(t, e, fmt.Sprintf("api.allowed.test:%d", u.port))
	rc.c.SetDeadline(time.Time{})
	// One client connection, the tunnel, for every authority.
	cc, err := (&http2.Transport{AllowHTTP: true}).NewClientConn(rc.c)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c := &http.Client{Transport: cc, Timeout: 10 * time.Second}
	for _, tc := range []struct {
		authority string
		status    int
	}{{"evil.example", 403}, {"api.allowed.test", 200}, {"other.example", 403}} {
		resp, err := c.Get(fmt.Sprintf("http://%s:%d/h2", tc.authority, u.port))
		if err != nil {
			t.Fatalf("%s: %v", tc.authority, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Fatalf(":authority %s inside the tunnel: %d %q, want %d", tc.authority, resp.StatusCode, b, tc.status)
		}
		if tc.status == 403 && !strings.Contains(string(b), "no egress rule allows "+tc.authority) {
			t.Fatalf("403 body %q", b)
		}
	}
	if hit := u.next(t); hit.Host != fmt.Sprintf("api.allowed.test:%d", u.port) || hit.Proto != "HTTP/2.0" {
		t.Fatalf("upstream saw %s %s", hit.Host, hit.Proto)
	}
	u.none(t)
}

// Trigger 1 through the gateway: a CONNECT to an allowed name whose DNS
// answer is the node's loopback is refused at the CONNECT (the node-only
// service accepts nothing), unless the operator allows that range.
func TestGatewayConnectMeetsTheAddressPolicy(t *testing.T) {
	ls := newLocalService(t, "127.0.0.1")
	z := newZoneDNS(t, map[string][]netip.Addr{"api.evil.test.": {netip.MustParseAddr("127.0.0.1")}})
	target := fmt.Sprintf("api.evil.test:%d", ls.port)
	for _, tc := range []struct {
		name   string
		allow  []netip.Prefix
		status int
	}{{"no allowance", []netip.Prefix{}, 403}, {"--allow-upstream 127.0.0.1/32", []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, 200}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newGatewayWith(t, Config{Rules: compileRules(t, httpRule("prefix", "api.*", ls.port)),
				Resolver: z.resolver(), AllowUpstream: tc.allow})
			rc := e.dial()
			rc.send("CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n\r\n")
			resp, err := http.ReadResponse(rc.br, &http.Request{Method: "CONNECT"})
			if err != nil || resp.StatusCode != tc.status {
				t.Fatalf("CONNECT %s: %v %v, want %d", target, resp, err, tc.status)
			}
			if tc.status == 403 {
				b, _ := io.ReadAll(resp.Body)
				mustContain(t, string(b), "egressd: upstream address 127.0.0.1 of api.evil.test refused: loopback")
				if n := ls.accepted.Load(); n != 0 {
					t.Fatalf("the node-only service accepted %d connection(s)", n)
				}
				return
			}
			rc.send("GET / HTTP/1.1\r\nHost: api.evil.test\r\n\r\n")
			if resp, body := rc.read("GET"); resp.StatusCode != 200 || body != "node secret" {
				t.Fatalf("allowed range: %d %q", resp.StatusCode, body)
			}
		})
	}
}
