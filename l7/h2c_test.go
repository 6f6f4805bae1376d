package l7

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/egressd/egressd/rules"
)

// newH2CUpstream starts an upstream speaking HTTP/1.1 and h2c (prior
// knowledge) that records each request (reading its body first) unless
// h must stream; conns counts its accepted connections.
func newH2CUpstream(t testing.TB, h http.HandlerFunc, streaming bool) (*upstream, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int32
	u := &upstream{ln: ln, port: uint16(ln.Addr().(*net.TCPAddr).Port), reqs: make(chan *seenRequest, 100)}
	handler := u.record(h)
	if streaming {
		handler = h
	}
	u.srv = &http.Server{
		Handler:  handler,
		ErrorLog: log.New(io.Discard, "", 0),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				conns.Add(1)
			}
		},
		Protocols: new(http.Protocols),
	}
	u.srv.Protocols.SetHTTP1(true)
	u.srv.Protocols.SetUnencryptedHTTP2(true)
	go u.srv.Serve(ln)
	t.Cleanup(func() { u.srv.Close() })
	return u, &conns
}

// protoRule allows service on port with protocol proto.
func protoRule(name, service string, port uint16, proto rules.Protocol) *rules.Rule {
	return &rules.Rule{Name: name, Service: service, Ports: []rules.Port{{Number: port, Protocol: proto}}}
}

// h2cEnv starts an h2c upstream (recording requests, or answering with h
// unrecorded when given) and a proxy whose connections all look redirected
// from it; api.allowed.test is allowed there as HTTP2. tune adjusts the
// proxy's Config.
func h2cEnv(t *testing.T, h http.HandlerFunc, tune ...func(*Config)) (*env, *upstream, *atomic.Int32) {
	t.Helper()
	u, conns := newH2CUpstream(t, h, h != nil)
	cfg := Config{
		Rules:       compileRules(t, protoRule("h2-api", "api.allowed.test", u.port, rules.HTTP2)),
		OriginalDst: fixedOrig{u.orig()},
	}
	for _, f := range tune {
		f(&cfg)
	}
	return newEnv(t, cfg), u, conns
}

// h2cClient is a Go HTTP/2 client speaking h2c to the proxy; dials counts
// the client connections it opened.
func h2cClient(t testing.TB, e *env) (*http.Client, *atomic.Int32) {
	t.Helper()
	var dials atomic.Int32
	tr := &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, _ string, _ *tls.Config) (net.Conn, error) {
			dials.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, network, e.addr)
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}, &dials
}

func TestH2CCurlAllowAndDeny(t *testing.T) {
	e, u, _ := h2cEnv(t, nil)
	code, body := curl(t, e, fmt.Sprintf("http://api.allowed.test:%d/h2?q=1", u.port),
		"--http2-prior-knowledge", "--data-binary", "payload", "-H", "X-Test: yes")
	want := fmt.Sprintf("hello api.allowed.test:%d/h2", u.port)
	if code != 200 || body != want {
		t.Fatalf("allowed: %d %q, want 200 %q", code, body, want)
	}
	got := u.next(t)
	if got.Proto != "HTTP/2.0" || got.Method != "POST" || got.URI != "/h2?q=1" || got.Body != "payload" ||
		got.Header.Get("X-Test") != "yes" || got.Host != fmt.Sprintf("api.allowed.test:%d", u.port) {
		t.Fatalf("upstream got %+v", got)
	}
	code, body = curl(t, e, fmt.Sprintf("http://denied.test:%d/", u.port), "--http2-prior-knowledge")
	if code != 403 {
		t.Fatalf("denied: %d %q, want 403", code, body)
	}
	mustContain(t, body, fmt.Sprintf("egressd: no egress rule allows denied.test on port %d", u.port))
	u.none(t)
	if n := e.counter("egressd_requests_total", "decision", "deny", "protocol", "h2c"); n != 1 {
		t.Errorf("deny counter %v, want 1", n)
	}
	if n := e.counter("egressd_requests_total", "decision", "allow", "protocol", "h2c", "rule", "h2-api"); n != 1 {
		t.Errorf("allow counter %v, want 1", n)
	}
	mustContain(t, e.logs.String(), `"protocol":"h2c","upstream":"http","rule":"h2-api","decision":"allow","status":200,"bytes_in":7`)
}

// Streams on one client connection are decided one by one; allowed ones
// share one upstream connection.
func TestH2CMixedStreamsOnOneConnection(t *testing.T) {
	e, u, upConns := h2cEnv(t, nil)
	client, dials := h2cClient(t, e)
	hosts := []string{"api.allowed.test", "denied.test", "API.Allowed.Test.", "other.test", "api.allowed.test"}
	var wg sync.WaitGroup
	codes := make([]int, len(hosts))
	for i, host := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", fmt.Sprintf("http://proxy/s%d", i), nil)
			req.Host = host
			res, err := client.Do(req)
			if err != nil {
				t.Errorf("%s: %v", host, err)
				return
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			codes[i] = res.StatusCode
			if marker := res.Header.Get("X-Egressd"); (res.StatusCode == 403) != (marker == "denied") {
				t.Errorf("%s: status %d with X-Egressd %q", host, res.StatusCode, marker)
			}
		}()
	}
	wg.Wait()
	if want := []int{200, 403, 200, 403, 200}; fmt.Sprint(codes) != fmt.Sprint(want) {
		t.Fatalf("statuses %v, want %v", codes, want)
	}
	for range 3 {
		u.next(t)
	}
	u.none(t)
	if dials.Load() != 1 || upConns.Load() != 1 {
		t.Errorf("client connections %d, upstream connections %d; want 1 and 1", dials.Load(), upConns.Load())
	}
}

// nghttp runs Debian's nghttp (h2c prior knowledge) against the proxy with
// :authority overridden, and returns the :status of every stream.
func nghttp(t *testing.T, e *env, authority string, paths ...string) []string {
	return nghttpArgs(t, e, []string{"-H", ":authority: " + authority}, paths...)
}

// nghttpArgs is nghttp with extra arguments.
func nghttpArgs(t *testing.T, e *env, extra []string, paths ...string) []string {
	t.Helper()
	out := nghttpOutput(t, e, extra, paths...)
	var statuses []string
	for _, m := range regexp.MustCompile(`recv \(stream_id=\d+\) :status: (\d+)`).FindAllStringSubmatch(out, -1) {
		statuses = append(statuses, m[1])
	}
	return statuses
}

// nghttpOutput runs nghttp -nv with extra arguments and returns its output.
func nghttpOutput(t *testing.T, e *env, extra []string, paths ...string) string {
	t.Helper()
	bin, err := exec.LookPath("nghttp")
	if err != nil {
		t.Skip("nghttp is not installed (apt-get install nghttp2-client)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	args := append([]string{"-nv"}, extra...)
	for _, p := range paths {
		args = append(args, "http://"+e.addr+p)
	}
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("nghttp %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func TestH2CNghttp(t *testing.T) {
	e, u, upConns := h2cEnv(t, nil)
	got := nghttp(t, e, fmt.Sprintf("api.allowed.test:%d", u.port), "/a", "/b", "/c", "/d")
	if strings.Join(got, " ") != "200 200 200 200" {
		t.Fatalf("allowed statuses %v", got)
	}
	seen := map[string]bool{}
	for range 4 {
		seen[u.next(t).URI] = true
	}
	if len(seen) != 4 {
		t.Errorf("upstream saw %v", seen)
	}
	got = nghttp(t, e, "evil.test", "/x", "/y")
	if strings.Join(got, " ") != "403 403" {
		t.Fatalf("denied statuses %v", got)
	}
	u.none(t)
	// A second client connection reuses the pooled upstream connection.
	if got := nghttp(t, e, fmt.Sprintf("api.allowed.test:%d", u.port), "/e"); strings.Join(got, " ") != "200" {
		t.Fatalf("second client: statuses %v", got)
	}
	u.next(t)
	if upConns.Load() != 1 {
		t.Errorf("upstream connections %d, want 1 (shared across streams and clients)", upConns.Load())
	}
}

// A stream flows both ways at once: every chunk the client sends comes back
// before the client sends the next one; trailers cross in both directions.
func TestH2CStreamFullDuplexAndTrailers(t *testing.T) {
	e, u, _ := h2cEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Lines")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		sc := bufio.NewScanner(r.Body)
		n := 0
		for sc.Scan() {
			fmt.Fprintf(w, "echo %s\n", sc.Text())
			w.(http.Flusher).Flush()
			n++
		}
		w.Header().Set("X-Lines", fmt.Sprint(n))
		w.Header().Set(http.TrailerPrefix+"X-Req-Trailer", r.Trailer.Get("X-Req-Trailer"))
	})
	_ = u
	client, _ := h2cClient(t, e)
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", "http://proxy/stream", pr)
	req.Host = "api.allowed.test"
	req.Trailer = http.Header{"X-Req-Trailer": nil}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	br := bufio.NewReader(res.Body)
	for i := range 3 {
		fmt.Fprintf(pw, "line %d\n", i)
		got, err := br.ReadString('\n')
		if want := fmt.Sprintf("echo line %d\n", i); got != want || err != nil {
			t.Fatalf("read %q, %v; want %q", got, err, want)
		}
	}
	req.Trailer.Set("X-Req-Trailer", "sent-last")
	pw.Close()
	if rest, err := io.ReadAll(br); len(rest) != 0 || err != nil {
		t.Fatalf("rest %q, %v", rest, err)
	}
	if res.Trailer.Get("X-Lines") != "3" || res.Trailer.Get("X-Req-Trailer") != "sent-last" {
		t.Fatalf("trailers %v", res.Trailer)
	}
}

// An h2c connection with no stream open is idle: Shutdown closes it rather
// than waiting for the client to leave.
func TestH2CShutdownClosesIdleConnections(t *testing.T) {
	e, _, _ := h2cEnv(t, nil)
	client, _ := h2cClient(t, e)
	req, _ := http.NewRequest("GET", "http://proxy/idle", nil)
	req.Host = "api.allowed.test"
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.p.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with an idle h2c connection: %v", err)
	}
}

// h2load (Debian's nghttp2-client) drives many concurrent streams over a few
// h2c connections; every stream is decided and answered.
func TestH2CH2Load(t *testing.T) {
	bin, err := exec.LookPath("h2load")
	if err != nil {
		t.Skip("h2load is not installed (apt-get install nghttp2-client)")
	}
	e, u, _ := h2cEnv(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	for _, tc := range []struct{ authority, want string }{
		{fmt.Sprintf("api.allowed.test:%d", u.port), "status codes: 300 2xx, 0 3xx, 0 4xx, 0 5xx"},
		{"denied.test", "status codes: 0 2xx, 0 3xx, 300 4xx, 0 5xx"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		out, err := exec.CommandContext(ctx, bin, "-n", "300", "-c", "3", "-m", "10",
			"-H", ":authority: "+tc.authority, "http://"+e.addr+"/load").CombinedOutput()
		cancel()
		if err != nil || !strings.Contains(string(out), tc.want) {
			t.Fatalf("h2load %s: %v\n%s", tc.authority, err, out)
		}
	}
}

// An HTTP/1.1 client on a port the rules mark HTTP2 is still served (the
// HTTP/1 path forwards it as HTTP/1.1).
func TestH2CPortServesHTTP1(t *testing.T) {
	e, u, _ := h2cEnv(t, nil)
	code, body := curl(t, e, fmt.Sprintf("http://api.allowed.test:%d/one", u.port), "--http1.1")
	if code != 200 || body != fmt.Sprintf("hello api.allowed.test:%d/one", u.port) {
		t.Fatalf("HTTP/1.1 on an HTTP2 port: %d %q", code, body)
	}
	if got := u.next(t); got.Proto != "HTTP/1.1" {
		t.Fatalf("upstream got %s", got.Proto)
	}
}

// A Host header that contradicts :authority makes the request malformed
// (RFC 9113 section 8.3.1): the stream is reset and no upstream sees it,
// whichever of the two names the rules allow.
func TestH2CHostHeaderCannotSmuggle(t *testing.T) {
	e, u, _ := h2cEnv(t, nil)
	allowed := fmt.Sprintf("api.allowed.test:%d", u.port)
	for _, pair := range [][2]string{{allowed, "evil.test"}, {"evil.test", allowed}} {
		got := nghttpArgs(t, e, []string{"-H", ":authority: " + pair[0], "-H", "host: " + pair[1]}, "/a")
		if len(got) != 0 {
			t.Fatalf(":authority %s, host %s: statuses %v, want the stream reset", pair[0], pair[1], got)
		}
	}
	u.none(t)
}

// The proxy adds nothing: no Accept-Encoding upstream (and so no
// decompression), no Content-Type or Date the upstream did not send.
func TestH2CForwardsUnchanged(t *testing.T) {
	var sawAE atomic.Value
	e, _, _ := h2cEnv(t, func(w http.ResponseWriter, r *http.Request) {
		sawAE.Store(r.Header.Get("Accept-Encoding") + "|" + r.Header.Get("Via"))
		w.Header()["Content-Type"] = nil
		w.Header()["Date"] = nil
		w.Write([]byte("<html>sniffable</html>"))
	})
	client, _ := h2cClient(t, e)
	client.Transport.(*http2.Transport).DisableCompression = true
	req, _ := http.NewRequest("GET", "http://proxy/", nil)
	req.Host = "api.allowed.test"
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(body) != "<html>sniffable</html>" || sawAE.Load() != "|" {
		t.Fatalf("body %q; upstream saw Accept-Encoding|Via %q", body, sawAE.Load())
	}
	if ct, date := res.Header.Values("Content-Type"), res.Header.Values("Date"); len(ct) != 0 || len(date) != 0 {
		t.Fatalf("client got Content-Type %q, Date %q; want neither", ct, date)
	}
}

// The upstream's "trailer:" response field reaches the client with the
// trailers it announces (nghttp shows every field it receives).
func TestH2CTrailerFieldPassed(t *testing.T) {
	e, u, _ := h2cEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum, X-Lines")
		w.Write([]byte("body\n"))
		w.Header().Set("X-Checksum", "abc")
		w.Header().Set("X-Lines", "1")
	})
	out := nghttpOutput(t, e, []string{"-H", fmt.Sprintf(":authority: api.allowed.test:%d", u.port)}, "/t")
	for _, want := range []string{"trailer: X-Checksum", "trailer: X-Lines", "x-checksum: abc", "x-lines: 1"} {
		if !regexp.MustCompile(`recv \(stream_id=\d+\) ` + regexp.QuoteMeta(want) + `\n`).MatchString(out) {
			t.Errorf("nghttp did not receive %q:\n%s", want, out)
		}
	}
}

// Streams of one connection alternating between two upstreams each go to
// their own: the connection's cached Target (h2cStreams.targetFor) follows
// the stream's authority, and each upstream name has its own upstream
// connection (pool key).
func TestH2CStreamsAlternatingUpstreams(t *testing.T) {
	u, upConns := newH2CUpstream(t, nil, false)
	e := newEnv(t, Config{
		Rules: compileRules(t, protoRule("a", "a.allowed.test", u.port, rules.HTTP2),
			protoRule("b", "b.allowed.test", u.port, rules.HTTP2)),
		OriginalDst: fixedOrig{u.orig()},
	})
	client, dials := h2cClient(t, e)
	hosts := []string{"a.allowed.test", "b.allowed.test", "a.allowed.test", "denied.test", "b.allowed.test", "b.allowed.test", "a.allowed.test"}
	var want []string
	for i, host := range hosts {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://proxy/s%d", i), nil)
		req.Host = host
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if host == "denied.test" {
			if res.StatusCode != 403 {
				t.Fatalf("stream %d to %s: %d, want 403", i, host, res.StatusCode)
			}
			continue
		}
		if res.StatusCode != 200 || string(body) != fmt.Sprintf("hello %s/s%d", host, i) {
			t.Fatalf("stream %d to %s: %d %q", i, host, res.StatusCode, body)
		}
		want = append(want, fmt.Sprintf("%s /s%d", host, i))
	}
	for _, w := range want {
		if got := u.next(t); got.Host+" "+got.URI != w {
			t.Fatalf("upstream saw %s %s, want %s", got.Host, got.URI, w)
		}
	}
	u.none(t)
	if dials.Load() != 1 || upConns.Load() != 2 {
		t.Errorf("client connections %d, upstream connections %d; want 1 and 2 (one per upstream name)", dials.Load(), upConns.Load())
	}
}
