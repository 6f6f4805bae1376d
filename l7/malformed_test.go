package l7

import (
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/l7/internal/h1"
)

func TestMalformedRequestsGetADefinedStatusAndClose(t *testing.T) {
	cases := []struct {
		name   string
		input  string
		status int
	}{
		{"garbage", "\x00\x01\x02\x03 hello\r\n\r\n", 400},
		{"no host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"empty host", "GET / HTTP/1.1\r\nHost: \r\n\r\n", 400},
		{"two hosts", "GET / HTTP/1.1\r\nHost: a.allowed.test\r\nHost: evil.test\r\n\r\n", 400},
		{"host with userinfo", "GET / HTTP/1.1\r\nHost: a.allowed.test@evil.test\r\n\r\n", 400},
		{"absolute form with userinfo", "GET http://u@evil.test/ HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n", 400},
		{"CL and TE", "POST / HTTP/1.1\r\nHost: a.allowed.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"conflicting CL", "POST / HTTP/1.1\r\nHost: a.allowed.test\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400},
		{"CL list conflict", "POST / HTTP/1.1\r\nHost: a.allowed.test\r\nContent-Length: 3, 4\r\n\r\nabcd", 400},
		{"negative CL", "POST / HTTP/1.1\r\nHost: a.allowed.test\r\nContent-Length: -1\r\n\r\n", 400},
		{"TE not chunked", "POST / HTTP/1.1\r\nHost: a.allowed.test\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
		{"TE with an empty element", "POST / HTTP/1.1\r\nHost: a.allowed.test\r\nTransfer-Encoding: , chunked\r\n\r\n0\r\n\r\n", 400},
		{"TE ending in a comma", "POST / HTTP/1.1\r\nHost: a.allowed.test\r\nTransfer-Encoding: chunked,\r\n\r\n0\r\n\r\n", 400},
		{"empty TE", "POST / HTTP/1.1\r\nHost: a.allowed.test\r\nTransfer-Encoding: \r\n\r\n0\r\n\r\n", 501},
		{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nHost: a.allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"bare LF", "GET / HTTP/1.1\nHost: a.allowed.test\n\n", 400},
		{"bare LF in a field", "GET / HTTP/1.1\r\nHost: a.allowed.test\nX: y\r\n\r\n", 400},
		{"bare CR in a value", "GET / HTTP/1.1\r\nHost: a.allowed.test\r\nX: a\rb\r\n\r\n", 400},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: a.allowed.test\r\nX: a\r\n b\r\n\r\n", 400},
		{"space before colon", "GET / HTTP/1.1\r\nHost : evil.test\r\nHost: a.allowed.test\r\n\r\n", 400},
		{"HTTP/2.0 request line", "GET / HTTP/2.0\r\nHost: a.allowed.test\r\n\r\n", 505},
		{"bad version", "GET / HTTP/x\r\nHost: a.allowed.test\r\n\r\n", 400},
		{"bad target", "GET a.allowed.test HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n", 400},
		{"connect", "CONNECT a.allowed.test:443 HTTP/1.1\r\nHost: a.allowed.test:443\r\n\r\n", 405},
		{"invalid chunk size", "POST / HTTP/1.1\r\nHost: a.allowed.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400},
		{"invalid chunk size, denied host", "POST / HTTP/1.1\r\nHost: evil.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 403},
		{"chunk size overflow", "POST / HTTP/1.1\r\nHost: a.allowed.test\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n", 400},
		{"chunk without CRLF", "POST / HTTP/1.1\r\nHost: a.allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n", 400},
		{"chunk size bare LF", "POST / HTTP/1.1\r\nHost: a.allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n", 400},
		{"huge header", "GET / HTTP/1.1\r\nHost: a.allowed.test\r\nX-Big: " + strings.Repeat("a", 40<<10) + "\r\n\r\n", 431},
		{"many headers", "GET / HTTP/1.1\r\nHost: a.allowed.test\r\n" + strings.Repeat("X-A: b\r\n", 5000) + "\r\n", 431},
		{"huge request line", "GET /" + strings.Repeat("a", 40<<10) + " HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n", 431},
	}
	e, _ := allowEnv(t, nil)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rc := e.dial()
			rc.send(tc.input)
			resp, body := rc.read("GET")
			if resp.StatusCode != tc.status {
				t.Fatalf("got %d %q, want %d", resp.StatusCode, body, tc.status)
			}
			if tc.status != 403 && resp.Header.Get("X-Egressd") != "invalid" {
				t.Errorf("X-Egressd = %q", resp.Header.Get("X-Egressd"))
			}
			if !rc.closed() {
				t.Errorf("connection left open after %d", tc.status)
			}
		})
	}
	if n := e.counter("egressd_requests_total", "decision", "invalid"); n == 0 {
		t.Error("invalid requests were not counted")
	}
}

func TestSlowlorisIsCutByTheHeaderTimeout(t *testing.T) {
	u := newUpstream(t, nil)
	e := newEnv(t, Config{
		Rules:             compileRules(t, httpRule("wild", "*.allowed.test", u.port)),
		OriginalDst:       fixedOrig{u.orig()},
		ReadHeaderTimeout: 200 * time.Millisecond,
	})
	rc := e.dial()
	rc.send("GET / HTTP/1.1\r\nHost: a.allo")
	time.Sleep(100 * time.Millisecond)
	rc.send("wed.test\r\nX-Slow: 1")
	wantHeadTimeout(t, rc, u)
}

// wantHeadTimeout: the proxy answers 408 and closes, forwarding nothing.
func wantHeadTimeout(t *testing.T, rc *rawClient, u *upstream) {
	t.Helper()
	resp, _ := rc.read("GET")
	if resp.StatusCode != 408 {
		t.Fatalf("got %d, want 408", resp.StatusCode)
	}
	if !rc.closed() {
		t.Error("connection left open")
	}
	u.none(t)
}

// TestSlowlorisOnAKeepAliveConnection: a later request's head that trickles
// in is cut by ReadHeaderTimeout as the first one's would be, also behind
// leading empty lines (the idle timeout is far longer).
func TestSlowlorisOnAKeepAliveConnection(t *testing.T) {
	for name, slow := range map[string]string{
		"partial head":       "GET / HTTP/1.1\r\nHost: a.allowed.test\r\n",
		"behind empty lines": "\r\n\r\nGET / HTTP/1.1\r\nHost: a.allowed.test\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			u, rc := afterOneRequest(t, Config{ReadHeaderTimeout: 200 * time.Millisecond})
			u.next(t)
			rc.send(slow)
			wantHeadTimeout(t, rc, u)
		})
	}
}

// afterOneRequest starts a proxy with cfg's timeouts allowing
// *.allowed.test and returns a client connection on which one request was
// answered 200.
func afterOneRequest(t *testing.T, cfg Config) (*upstream, *rawClient) {
	t.Helper()
	u := newUpstream(t, nil)
	cfg.Rules = compileRules(t, httpRule("wild", "*.allowed.test", u.port))
	cfg.OriginalDst = fixedOrig{u.orig()}
	rc := newEnv(t, cfg).dial()
	rc.send("GET / HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n")
	if resp, _ := rc.read("GET"); resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	return u, rc
}

func TestIdleKeepAliveConnectionIsClosed(t *testing.T) {
	_, rc := afterOneRequest(t, Config{IdleTimeout: 100 * time.Millisecond})
	if !rc.closed() {
		t.Error("idle connection left open")
	}
}

func TestHeadBoundsAgainstQuadraticWork(t *testing.T) {
	e, _ := allowEnv(t, nil)
	for _, tc := range []struct {
		name   string
		head   string
		status int
	}{
		{"too many fields", strings.Repeat("A: b\r\n", h1.MaxFields+1), 431},
		{"too many Connection names", "Connection: " + strings.Repeat("x,", h1.MaxConnTokens+1) + "\r\n", 400},
	} {
		rc := e.dial()
		rc.send("GET / HTTP/1.1\r\nHost: a.allowed.test\r\n" + tc.head + "\r\n")
		if resp, body := rc.read("GET"); resp.StatusCode != tc.status {
			t.Errorf("%s: got %d %q, want %d", tc.name, resp.StatusCode, body, tc.status)
		}
	}
}
