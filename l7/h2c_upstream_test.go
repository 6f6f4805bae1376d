package l7

import (
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/egressd/egressd/l7/internal/h2c"
	"github.com/egressd/egressd/rules"
)

// Upstream failures before a response head: 504 when the head is late
// (ResponseTimeout), 502 when nothing listens; gRPC callers get the
// matching status codes.
func TestH2CUpstreamFailures(t *testing.T) {
	u, _ := newH2CUpstream(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := uint16(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	for _, tc := range []struct {
		name       string
		port       uint16
		status     int
		grpcStatus string
	}{
		{"slow head", u.port, 504, ""},
		{"connection refused", closedPort, 502, "14"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Config{
				Rules:           compileRules(t, protoRule("h2-api", "api.allowed.test", tc.port, rules.HTTP2)),
				OriginalDst:     fixedOrig{netip4Loopback(tc.port)},
				ResponseTimeout: 100 * time.Millisecond,
			})
			client, _ := h2cClient(t, e)
			req, _ := http.NewRequest("GET", "http://proxy/", nil)
			req.Host = "api.allowed.test"
			res, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", res.StatusCode, tc.status)
			}
			if tc.status == 504 {
				return // gRPC calls have no head timeout: their deadline rules
			}
			req, _ = http.NewRequest("POST", "http://proxy/grpc.testing.TestService/EmptyCall", strings.NewReader("\x00\x00\x00\x00\x00"))
			req.Host = "api.allowed.test"
			req.Header.Set("Content-Type", "application/grpc")
			res, err = client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != 200 || res.Header.Get("Grpc-Status") != tc.grpcStatus {
				t.Fatalf("gRPC: status %d, grpc-status %q; want 200, %s", res.StatusCode, res.Header.Get("Grpc-Status"), tc.grpcStatus)
			}
			// Logged as the client got it (the line is written before the
			// stream ends).
			mustContain(t, e.logs.String(), `"protocol":"grpc","upstream":"http","rule":"h2-api","decision":"allow","status":200,"grpc_status":"`+tc.grpcStatus+`",`)
		})
	}
}

// ResponseTimeout also bounds a stall inside a response body (the client's
// stream is reset), but not the time a slow upload takes, nor a gRPC stream.
func TestH2CResponseStall(t *testing.T) {
	e, _, _ := h2cEnv(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // an upload the client sends slowly
		w.Write([]byte("first "))
		w.(http.Flusher).Flush()
		if r.URL.Path == "/stall" {
			<-r.Context().Done()
			return
		}
		time.Sleep(300 * time.Millisecond) // quiet for longer than the response timeout, within the idle one
		w.Write([]byte("second"))
	}, func(c *Config) { c.ResponseTimeout, c.IdleTimeout = 150*time.Millisecond, 600*time.Millisecond })
	client, _ := h2cClient(t, e)
	get := func(path string) (string, error) {
		pr, pw := io.Pipe()
		go func() { // 300 ms of upload: longer than the timeout, never silent upstream
			for range 6 {
				time.Sleep(50 * time.Millisecond)
				pw.Write([]byte("x"))
			}
			pw.Close()
		}()
		req, _ := http.NewRequest("POST", "http://proxy"+path, pr)
		req.Host = "api.allowed.test"
		res, err := client.Do(req)
		if err != nil {
			return "", err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		return string(b), err
	}
	if body, err := get("/slow"); err != nil || body != "first second" {
		t.Fatalf("slow upload and short pause: %q, %v", body, err)
	}
	if body, err := get("/stall"); err == nil || body != "first " {
		t.Fatalf("stalled body: %q, %v; want the first part, then a reset", body, err)
	}
	waitForLog(t, e, "upstream silent for the idle timeout inside the response body")
}

// On an HTTPS port egressd originates TLS offering ALPN h2, then http/1.1
// (not for gRPC). An upstream that chooses http/1.1, or answers without
// ALPN, gets the h2c client's streams as HTTP/1.1 requests over TLS, on
// pooled connections, and is not asked for h2 again for a while; a gRPC
// stream gets UNAVAILABLE saying gRPC needs HTTP/2.
func TestH2CFallsBackToHTTP1ForHTTPSUpstreams(t *testing.T) {
	ca := newTestCA(t)
	cert := ca.leaf(t, "secure.allowed.test")
	for _, alpn := range [][]string{{"http/1.1"}, nil} {
		t.Run(fmt.Sprintf("alpn=%q", alpn), func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			var conns atomic.Int32
			u := &upstream{ln: ln, port: uint16(ln.Addr().(*net.TCPAddr).Port), reqs: make(chan *seenRequest, 100)}
			u.srv = &http.Server{
				Handler: u.record(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Trailer", "X-Sum")
					fmt.Fprintf(w, "%s %s tls=%v", r.Proto, r.Host, r.TLS != nil)
					w.Header().Set("X-Sum", "42")
				}),
				ErrorLog: log.New(io.Discard, "", 0),
				ConnState: func(_ net.Conn, st http.ConnState) {
					if st == http.StateNew {
						conns.Add(1)
					}
				},
			}
			go u.srv.Serve(tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: alpn}))
			t.Cleanup(func() { u.srv.Close() })
			e := newEnv(t, Config{
				Rules:       compileRules(t, protoRule("secure", "secure.allowed.test", u.port, rules.HTTPS)),
				OriginalDst: fixedOrig{netip4Loopback(u.port)},
				RootCAs:     ca.pool,
			})
			host := fmt.Sprintf("secure.allowed.test:%d", u.port)

			// curl, a real h2c client: a POST with a body.
			code, body := curl(t, e, "http://"+host+"/up", "--http2-prior-knowledge", "--data-binary", "payload",
				"-H", "X-Test: yes")
			if want := "HTTP/1.1 " + host + " tls=true"; code != 200 || body != want {
				t.Fatalf("curl: %d %q, want 200 %q", code, body, want)
			}
			got := u.next(t)
			if got.Proto != "HTTP/1.1" || got.Method != "POST" || got.URI != "/up" || got.Body != "payload" ||
				got.Host != host || got.Header.Get("X-Test") != "yes" || got.SNI != "secure.allowed.test" ||
				!strings.HasPrefix(got.Header.Get("User-Agent"), "curl/") || got.Header.Get("Accept-Encoding") != "" {
				t.Fatalf("upstream got %+v", got)
			}
			first := conns.Load() // the h2 attempt, then HTTP/1.1

			// Go's HTTP/2 client: a GET, its trailer relayed; the pooled
			// HTTP/1.1 connection carries it (no new h2 attempt).
			client, _ := h2cClient(t, e)
			req, _ := http.NewRequest("GET", "http://proxy/get", nil)
			req.Host = host
			res, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != 200 || string(b) != "HTTP/1.1 "+host+" tls=true" || res.Trailer.Get("X-Sum") != "42" {
				t.Fatalf("Go client: %d %q trailer %v", res.StatusCode, b, res.Trailer)
			}
			if got := u.next(t); got.Proto != "HTTP/1.1" || got.Method != "GET" || got.URI != "/get" {
				t.Fatalf("upstream got %+v", got)
			}
			if n := conns.Load(); n != first {
				t.Errorf("upstream connections %d after the second request, want %d (pooled, not asked for h2 again)", n, first)
			}

			// gRPC needs HTTP/2: UNAVAILABLE, saying why; never sent.
			req, _ = http.NewRequest("POST", "http://proxy/grpc.testing.TestService/EmptyCall", strings.NewReader("\x00\x00\x00\x00\x00"))
			req.Host = host
			req.Header.Set("Content-Type", "application/grpc")
			res, err = client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			msg := res.Trailer.Get("Grpc-Message") + res.Header.Get("Grpc-Message")
			if res.Header.Get("Grpc-Status")+res.Trailer.Get("Grpc-Status") != "14" || !strings.Contains(msg, "gRPC needs HTTP/2") {
				t.Fatalf("gRPC: grpc-status %q%q message %q, want 14 saying gRPC needs HTTP/2",
					res.Header.Get("Grpc-Status"), res.Trailer.Get("Grpc-Status"), msg)
			}
			u.none(t)
		})
	}
}

// Streams share an upstream connection only when everything its dial
// depends on is equal.
func TestH2UpstreamKey(t *testing.T) {
	orig4 := netip.MustParseAddrPort("198.18.0.5:443")
	orig6 := netip.MustParseAddrPort("[2001:2::5]:443")
	direct, viaProxy := rules.Match{}, rules.Match{UseEgressProxy: true}
	literal4 := rules.Match{Rule: &rules.Rule{Service: "127.0.0.1"}}
	any := rules.Match{Rule: &rules.Rule{Service: "*"}}
	tests := []struct {
		mode DialMode
		d    h2c.Target
		want string
	}{
		{DialResolve, h2c.Target{Match: direct, Host: "API.Example.test.:8443", Orig: orig4}, "api.example.test:443"},
		{DialResolve, h2c.Target{Match: direct, Host: "api.example.test", Orig: orig4, TLS: true}, "TLS.api.example.test:443"},
		{DialResolve, h2c.Target{Match: viaProxy, Host: "api.example.test", Orig: orig4, TLS: true}, "TLS.VIA-PROXY.api.example.test:443"},
		{DialOriginal, h2c.Target{Match: direct, Host: "api.example.test", Orig: orig4}, "198.18.0.5.IP.api.example.test:443"},
		{DialOriginal, h2c.Target{Match: direct, Host: "api.example.test", Orig: orig6}, "2001-2--5.IP.api.example.test:443"},
		// A rule naming the IP literally lets the address policy pass it:
		// its connections are not for streams matched by another rule.
		// No host can spell that key.
		{DialResolve, h2c.Target{Match: literal4, Host: "127.0.0.1", Orig: orig4}, "LITERAL.127.0.0.1:443"},
		{DialResolve, h2c.Target{Match: any, Host: "127.0.0.1", Orig: orig4}, "127.0.0.1:443"},
		{DialResolve, h2c.Target{Match: any, Host: "LITERAL.127.0.0.1", Orig: orig4}, "literal.127.0.0.1:443"},
		{DialResolve, h2c.Target{Match: direct, Host: "TLS.api.example.test", Orig: orig4}, "tls.api.example.test:443"},
	}
	for _, tt := range tests {
		p := &Proxy{cfg: Config{DialMode: tt.mode}}
		d := p.h2Target(tt.d.Match, tt.d.Host, tt.d.Orig, false)
		d.TLS = tt.d.TLS
		if got := d.Key(); got != tt.want {
			t.Errorf("%v %+v: key %q, want %q", tt.mode, tt.d, got, tt.want)
		}
		if _, _, err := net.SplitHostPort(d.Key()); err != nil {
			t.Errorf("key is not a host:port: %v", err)
		}
	}
}
