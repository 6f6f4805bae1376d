package l7

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestStreamedResponseIsFlushedAsItComes(t *testing.T) {
	proceed := make(chan struct{})
	e, _ := allowEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("first;"))
		w.(http.Flusher).Flush()
		select { // the rest only once the client has seen the first part
		case <-proceed:
		case <-time.After(5 * time.Second):
		}
		w.Write([]byte("second"))
	})
	rc := e.dial()
	rc.send("GET /stream HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n")
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, len("first;"))
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "first;" {
		t.Fatalf("first part: %q %v", first, err)
	}
	close(proceed)
	rest, _ := io.ReadAll(resp.Body)
	if string(rest) != "second" {
		t.Fatalf("rest: %q", rest)
	}
}

func TestLargeBodiesBothWays(t *testing.T) {
	const size = 8 << 20
	e, u := allowEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "8388608")
		w.Write(bytes.Repeat([]byte("0123456789abcdef"), size/16))
	})
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return new(net.Dialer).DialContext(ctx, "tcp", e.addr)
	}}
	defer tr.CloseIdleConnections()
	up := bytes.Repeat([]byte("upload!!"), size/8)
	req, _ := http.NewRequest("POST", "http://big.allowed.test/", io.MultiReader(bytes.NewReader(up))) // unknown length: chunked
	resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil || n != size {
		t.Fatalf("download: %d bytes, %v", n, err)
	}
	want := sha256.Sum256(bytes.Repeat([]byte("0123456789abcdef"), size/16))
	if !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatal("download corrupted")
	}
	if got := u.next(t); got.Body != string(up) {
		t.Fatalf("upload: upstream got %d bytes, want %d", len(got.Body), len(up))
	}
}

func TestResponseHopByHopFieldsAreStripped(t *testing.T) {
	u := newRawUpstream(t, "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\n"+
		"Proxy-Authenticate: Basic\r\nX-End: 1\r\nContent-Length: 2\r\n\r\nok")
	e := newEnv(t, Config{
		Rules:       compileRules(t, httpRule("raw", "*.allowed.test", u.port)),
		OriginalDst: fixedOrig{u.orig()},
	})
	rc := e.dial()
	rc.send("GET / HTTP/1.1\r\nHost: a.allowed.test\r\nConnection: close\r\n\r\n")
	resp, body := rc.read("GET")
	if body != "ok" || resp.Header.Get("X-End") != "1" {
		t.Fatalf("got %q %v", body, resp.Header)
	}
	for _, h := range []string{"X-Hop", "Keep-Alive", "Proxy-Authenticate"} {
		if v := resp.Header.Get(h); v != "" {
			t.Errorf("client got hop-by-hop %s: %q", h, v)
		}
	}
	if !resp.Close || !rc.closed() {
		t.Error("Connection: close request: response not marked close or connection left open")
	}
	head := <-u.got
	if strings.Contains(head, "Connection:") {
		t.Errorf("upstream got a Connection field: %q", head)
	}
}

func TestIPv6ClientAndListener(t *testing.T) {
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback:", err)
	}
	u := newUpstream(t, nil)
	seen := make(chan netip.AddrPort, 1)
	lookup := origFunc(func(client, local netip.AddrPort) (netip.AddrPort, bool) {
		seen <- client
		return u.orig(), true
	})
	e := newEnv(t, Config{Rules: compileRules(t, httpRule("wild", "*.allowed.test", u.port)), OriginalDst: lookup})
	served := make(chan error, 1)
	go func() { served <- e.p.Serve(ln) }()
	c, err := net.Dial("tcp6", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc := &rawClient{t: t, c: c, br: bufio.NewReader(c)}
	rc.send("GET / HTTP/1.1\r\nHost: v6.allowed.test\r\n\r\n")
	if resp, _ := rc.read("GET"); resp.StatusCode != 200 {
		t.Fatalf("got %d", resp.StatusCode)
	}
	if client := <-seen; client.Addr() != netip.IPv6Loopback() {
		t.Errorf("OriginalDst saw client %v", client)
	}
	c.Close()
	e.p.Shutdown(context.Background())
	if err := <-served; !errors.Is(err, ErrProxyClosed) {
		t.Errorf("Serve(v6) = %v", err)
	}
}

// origFunc adapts a function to OriginalDst.
type origFunc func(client, local netip.AddrPort) (netip.AddrPort, bool)

func (f origFunc) Lookup(client, local netip.AddrPort) (netip.AddrPort, bool) {
	return f(client, local)
}

func TestShutdownCutsAnIdleSplice(t *testing.T) {
	upstreamDone := make(chan struct{})
	e, _ := allowEnv(t, func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer close(upstreamDone)
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: idle\r\n\r\n")
		brw.Flush()
		io.Copy(io.Discard, conn) // stays silent until the proxy goes away
	})
	rc := e.dial()
	rc.send("GET / HTTP/1.1\r\nHost: a.allowed.test\r\nConnection: Upgrade\r\nUpgrade: idle\r\n\r\n")
	if resp, err := http.ReadResponse(rc.br, nil); err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := e.p.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want the deadline (the splice was busy)", err)
	}
	select {
	case <-upstreamDone:
	case <-time.After(5 * time.Second):
		t.Fatal("upstream side of the splice still open after Shutdown")
	}
	if !rc.closed() {
		t.Error("client side of the splice still open after Shutdown")
	}
}

func TestTransferCodingsBeforeChunkedAreKept(t *testing.T) {
	u := newRawUpstream(t, "HTTP/1.1 200 OK\r\nTransfer-Encoding: x-custom, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
	e := newEnv(t, Config{
		Rules:       compileRules(t, httpRule("raw", "*.allowed.test", u.port)),
		OriginalDst: fixedOrig{u.orig()},
	})
	rc := e.dial()
	rc.send("GET / HTTP/1.1\r\nHost: a.allowed.test\r\n\r\nGET / HTTP/1.1\r\nHost: evil.test\r\n\r\n")
	head, err := rc.br.ReadString('\n')
	for err == nil && head != "\r\n" {
		if strings.HasPrefix(head, "Transfer-Encoding:") && head != "Transfer-Encoding: x-custom, chunked\r\n" {
			t.Fatalf("got %q", head)
		}
		head, err = rc.br.ReadString('\n')
	}
	body := make([]byte, len("3\r\nabc\r\n0\r\n\r\n"))
	if _, err := io.ReadFull(rc.br, body); err != nil || string(body) != "3\r\nabc\r\n0\r\n\r\n" {
		t.Fatalf("body %q %v", body, err)
	}
	if resp, _ := rc.read("GET"); resp.StatusCode != 403 { // the connection is still in step
		t.Fatalf("next: %d", resp.StatusCode)
	}
}
