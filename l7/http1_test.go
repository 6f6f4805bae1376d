package l7

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// allowEnv: an upstream and a proxy whose rules allow *.allowed.test and
// exact.whitelisted.test on the upstream's port.
func allowEnv(t *testing.T, h http.HandlerFunc) (*env, *upstream) {
	t.Helper()
	u := newUpstream(t, h)
	e := newEnv(t, Config{
		Rules: compileRules(t,
			httpRule("wild", "*.allowed.test", u.port),
			httpRule("exact", "exact.whitelisted.test", u.port)),
		OriginalDst: fixedOrig{u.orig()},
	})
	return e, u
}

func TestAllowForwardsToTheMatchedHost(t *testing.T) {
	e, u := allowEnv(t, nil)
	rc := e.dial()
	rc.send("GET /a?b=1 HTTP/1.1\r\nHost: api.allowed.test\r\nX-App: 1\r\nProxy-Authorization: Basic c2VjcmV0\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\nKeep-Alive: timeout=5\r\n\r\n")
	resp, body := rc.read("GET")
	if resp.StatusCode != 200 || body != "hello api.allowed.test/a" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	got := u.next(t)
	if got.Host != "api.allowed.test" || got.URI != "/a?b=1" || got.Header.Get("X-App") != "1" {
		t.Fatalf("upstream got %+v", got)
	}
	for _, h := range []string{"Proxy-Authorization", "X-Secret", "Keep-Alive"} {
		if v := got.Header.Get(h); v != "" {
			t.Errorf("upstream got hop-by-hop %s: %q", h, v)
		}
	}
	if dialed := <-e.dials; dialed != fmt.Sprintf("api.allowed.test.:%d", u.port) {
		t.Errorf("proxy dialed %q, want the resolved host (absolute) on the original port", dialed)
	}
	if n := e.counter("egressd_requests_total", "decision", "allow", "rule", "wild"); n != 1 {
		t.Errorf("allow counter = %v", n)
	}
	mustContain(t, e.logs.String(), `"decision":"allow"`)
	mustContain(t, e.logs.String(), `"rule":"wild"`)
}

func TestDenyAnswers403AndKeepsTheConnection(t *testing.T) {
	e, u := allowEnv(t, nil)
	rc := e.dial()
	rc.send("POST / HTTP/1.1\r\nHost: evil.example.test\r\nContent-Length: 5\r\n\r\nhello")
	resp, body := rc.read("POST")
	if resp.StatusCode != 403 || resp.Header.Get("X-Egressd") != "denied" {
		t.Fatalf("got %d %v", resp.StatusCode, resp.Header)
	}
	mustContain(t, body, "no egress rule allows evil.example.test on port")
	mustContain(t, body, fmt.Sprint(u.port))
	u.none(t)
	// The same connection carries the next, allowed request.
	rc.send("GET /next HTTP/1.1\r\nHost: exact.whitelisted.test\r\n\r\n")
	resp, body = rc.read("GET")
	if resp.StatusCode != 200 || body != "hello exact.whitelisted.test/next" {
		t.Fatalf("after deny: %d %q", resp.StatusCode, body)
	}
	if n := e.counter("egressd_requests_total", "decision", "deny"); n != 1 {
		t.Errorf("deny counter = %v", n)
	}
}

func TestSuffixLookalikeIsDenied(t *testing.T) {
	e, u := allowEnv(t, nil)
	rc := e.dial()
	for _, host := range []string{"allowed.test.evil.test", "allowed.test", "exact.whitelisted.test.evil"} {
		rc.send("GET / HTTP/1.1\r\nHost: " + host + "\r\n\r\n")
		if resp, _ := rc.read("GET"); resp.StatusCode != 403 {
			t.Errorf("%s: got %d, want 403", host, resp.StatusCode)
		}
	}
	u.none(t)
}

func TestKeepAliveMixedHostsEachDecided(t *testing.T) {
	e, u := allowEnv(t, nil)
	rc := e.dial()
	hosts := []string{"a.allowed.test", "evil.test", "exact.whitelisted.test", "b.allowed.test:80", "EVIL.allowed.test."}
	want := []int{200, 403, 200, 200, 200}
	for i, h := range hosts {
		rc.send("GET /" + fmt.Sprint(i) + " HTTP/1.1\r\nHost: " + h + "\r\n\r\n")
		resp, _ := rc.read("GET")
		if resp.StatusCode != want[i] {
			t.Fatalf("request %d (%s): %d, want %d", i, h, resp.StatusCode, want[i])
		}
		if want[i] == 200 {
			if got := u.next(t); got.Host != h || got.URI != "/"+fmt.Sprint(i) {
				t.Fatalf("upstream got Host %q URI %q, want %q", got.Host, got.URI, h)
			}
		}
	}
	u.none(t)
}

func TestPipelinedRequestsEachDecided(t *testing.T) {
	e, u := allowEnv(t, nil)
	rc := e.dial()
	rc.send("GET /1 HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n" +
		"GET /2 HTTP/1.1\r\nHost: evil.test\r\n\r\n" +
		"POST /3 HTTP/1.1\r\nHost: b.allowed.test\r\nContent-Length: 3\r\n\r\nabc" +
		"GET /4 HTTP/1.1\r\nHost: evil.test\r\nContent-Length: 2\r\n\r\nxy" +
		"GET /5 HTTP/1.1\r\nHost: exact.whitelisted.test\r\n\r\n")
	for i, want := range []int{200, 403, 200, 403, 200} {
		resp, body := rc.read("GET")
		if resp.StatusCode != want {
			t.Fatalf("response %d: %d %q, want %d", i+1, resp.StatusCode, body, want)
		}
	}
	for _, want := range []string{"a.allowed.test /1 ", "b.allowed.test /3 abc", "exact.whitelisted.test /5 "} {
		got := u.next(t)
		if s := got.Host + " " + got.URI + " " + got.Body; s != want {
			t.Fatalf("upstream got %q, want %q", s, want)
		}
	}
	u.none(t)
}

func TestAbsoluteFormWinsOverHost(t *testing.T) {
	e, u := allowEnv(t, nil)
	rc := e.dial()
	// The Host names an allowed service, the absolute URI does not: the
	// upstream would act on the URI, so the URI is what is decided.
	rc.send("GET http://evil.test/x HTTP/1.1\r\nHost: api.allowed.test\r\n\r\n")
	if resp, _ := rc.read("GET"); resp.StatusCode != 403 {
		t.Fatalf("smuggled absolute-form: got %d, want 403", resp.StatusCode)
	}
	u.none(t)
	// The other way round it is allowed, and the upstream is told the URI's
	// authority in Host, with an origin-form target.
	rc.send("GET http://api.allowed.test/y?z HTTP/1.1\r\nHost: evil.test\r\n\r\n")
	if resp, _ := rc.read("GET"); resp.StatusCode != 200 {
		t.Fatalf("absolute-form allowed: got %d", resp.StatusCode)
	}
	if got := u.next(t); got.Host != "api.allowed.test" || got.URI != "/y?z" {
		t.Fatalf("upstream got Host %q URI %q", got.Host, got.URI)
	}
}

func TestPortNotInTheRuleIsDenied(t *testing.T) {
	u := newUpstream(t, nil)
	e := newEnv(t, Config{
		Rules:       compileRules(t, httpRule("other-port", "*.allowed.test", u.port+1)),
		OriginalDst: fixedOrig{u.orig()},
	})
	rc := e.dial()
	rc.send("GET / HTTP/1.1\r\nHost: api.allowed.test:" + fmt.Sprint(u.port+1) + "\r\n\r\n")
	resp, body := rc.read("GET")
	if resp.StatusCode != 403 {
		t.Fatalf("got %d, want 403 (rule is for another port)", resp.StatusCode)
	}
	mustContain(t, body, fmt.Sprintf("on port %d", u.port))
	u.none(t)
}

func TestUnknownOriginalDestinationIsClosed(t *testing.T) {
	u := newUpstream(t, nil)
	e := newEnv(t, Config{
		Rules:       compileRules(t, httpRule("wild", "*.allowed.test", u.port)),
		OriginalDst: fixedOrig{}, // knows nothing
	})
	rc := e.dial()
	rc.send("GET / HTTP/1.1\r\nHost: api.allowed.test\r\n\r\n")
	if !rc.closed() {
		t.Fatal("connection with no original destination was not closed")
	}
	u.none(t)
	if n := e.counter("egressd_original_destination_misses_total"); n != 1 {
		t.Errorf("miss counter = %v", n)
	}
}

func TestChunkedRequestAndResponseWithTrailers(t *testing.T) {
	e, u := allowEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		w.Write([]byte("part1-"))
		w.(http.Flusher).Flush()
		w.Write([]byte("part2"))
		w.Header().Set("X-Sum", "42")
	})
	rc := e.dial()
	rc.send("POST /up HTTP/1.1\r\nHost: api.allowed.test\r\nTransfer-Encoding: chunked\r\nTrailer: X-Req-Sum\r\nTE: trailers\r\n\r\n" +
		"4;ext=1\r\nabcd\r\n3\r\nefg\r\n0\r\nX-Req-Sum: 7\r\n\r\n")
	resp, body := rc.read("POST")
	if resp.StatusCode != 200 || body != "part1-part2" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if len(resp.TransferEncoding) == 0 || resp.Trailer.Get("X-Sum") != "42" {
		t.Fatalf("response framing %v trailer %v", resp.TransferEncoding, resp.Trailer)
	}
	got := u.next(t)
	if got.Body != "abcdefg" || got.Trailer.Get("X-Req-Sum") != "7" || got.Header.Get("Te") != "trailers" {
		t.Fatalf("upstream got body %q trailer %v TE %q", got.Body, got.Trailer, got.Header.Get("Te"))
	}
}

func TestHeadHasNoBody(t *testing.T) {
	e, u := allowEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		if r.Method != "HEAD" {
			w.Write(make([]byte, 1000))
		}
	})
	rc := e.dial()
	rc.send("HEAD /h HTTP/1.1\r\nHost: api.allowed.test\r\n\r\nGET /after HTTP/1.1\r\nHost: api.allowed.test\r\n\r\n")
	resp, _ := rc.read("HEAD")
	if resp.StatusCode != 200 || resp.ContentLength != 1000 {
		t.Fatalf("HEAD: %d, length %d", resp.StatusCode, resp.ContentLength)
	}
	// If the proxy had waited for 1000 body bytes, this would time out.
	if resp, _ := rc.read("GET"); resp.StatusCode != 200 {
		t.Fatalf("GET after HEAD: %d", resp.StatusCode)
	}
	u.next(t)
	u.next(t)
}

func TestExpectContinue(t *testing.T) {
	e, u := allowEnv(t, nil)
	rc := e.dial()
	rc.send("PUT /c HTTP/1.1\r\nHost: api.allowed.test\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
	resp, _ := rc.read("PUT")
	if resp.StatusCode != 100 {
		t.Fatalf("got %d before the body, want 100", resp.StatusCode)
	}
	rc.send("data")
	resp, body := rc.read("PUT")
	if resp.StatusCode != 200 || body != "hello api.allowed.test/c" {
		t.Fatalf("final: %d %q", resp.StatusCode, body)
	}
	if got := u.next(t); got.Body != "data" {
		t.Fatalf("upstream body %q", got.Body)
	}
}

func TestInformationalResponsesAreRelayed(t *testing.T) {
	e, _ := allowEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Write([]byte("ok"))
	})
	rc := e.dial()
	rc.send("GET / HTTP/1.1\r\nHost: api.allowed.test\r\n\r\n")
	resp, _ := rc.read("GET")
	if resp.StatusCode != 103 || resp.Header.Get("Link") == "" {
		t.Fatalf("got %d %v, want 103 with Link", resp.StatusCode, resp.Header)
	}
	if resp, body := rc.read("GET"); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("final %d %q", resp.StatusCode, body)
	}
}

func TestUpgradeIsMatchedThenSpliced(t *testing.T) {
	e, u := allowEnv(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "want upgrade", 400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		brw.WriteString("echo:" + line)
		brw.Flush()
	})
	rc := e.dial()
	rc.send("GET /ws HTTP/1.1\r\nHost: evil.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	if resp, _ := rc.read("GET"); resp.StatusCode != 403 {
		t.Fatalf("denied upgrade: %d", resp.StatusCode)
	}
	rc.send("GET /ws HTTP/1.1\r\nHost: api.allowed.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil || resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "echo" {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	rc.send("ping\n")
	line, err := rc.br.ReadString('\n')
	if err != nil || line != "echo:ping\n" {
		t.Fatalf("through the splice: %q %v", line, err)
	}
	u.next(t)
	if _, err := io.ReadAll(rc.br); err != nil {
		t.Fatalf("after upstream closed: %v", err)
	}
}

func TestGoClientThroughTheProxy(t *testing.T) {
	e, u := allowEnv(t, nil)
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return new(net.Dialer).DialContext(ctx, "tcp", e.addr) // what the BPF redirect does
	}}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for i := 0; i < 20; i++ {
		host := "svc.allowed.test"
		want := 200
		if i%3 == 1 {
			host, want = "blocked.test", 403
		}
		resp, err := c.Post(fmt.Sprintf("http://%s:%d/p%d", host, u.port, i), "text/plain", strings.NewReader(strings.Repeat("x", i*1000)))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("request %d to %s: %d", i, host, resp.StatusCode)
		}
		if want == 200 {
			if got := u.next(t); len(got.Body) != i*1000 {
				t.Fatalf("upstream body %d bytes, want %d", len(got.Body), i*1000)
			}
		}
	}
}

func TestUpgradeToH2CIsNotPassedOn(t *testing.T) {
	e, u := allowEnv(t, nil)
	rc := e.dial()
	rc.send("GET / HTTP/1.1\r\nHost: a.allowed.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n")
	if resp, _ := rc.read("GET"); resp.StatusCode != 200 {
		t.Fatalf("got %d, want a plain HTTP/1.1 answer", resp.StatusCode)
	}
	got := u.next(t)
	if got.Header.Get("Upgrade") != "" || got.Header.Get("Http2-Settings") != "" {
		t.Fatalf("upstream was offered the upgrade: %v", got.Header)
	}
}
