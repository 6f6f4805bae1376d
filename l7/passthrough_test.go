package l7

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/egressd/egressd/l7/internal/sni/snitest"
	"github.com/egressd/egressd/rules"
)

// passEnv starts an HTTPS upstream (h2 and http/1.1) whose certificate
// covers every name the tests use, so that only the proxy's decision keeps a
// denied name from reaching it, and a proxy allowing secure.allowed.test on
// its port. conns counts the connections the upstream accepted.
func passEnv(t *testing.T) (*env, *upstream, *testCA, *atomic.Int32) {
	t.Helper()
	ca := newTestCA(t)
	cert := ca.leaf(t, "secure.allowed.test", "denied.test")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int32
	u := &upstream{ln: ln, port: uint16(ln.Addr().(*net.TCPAddr).Port), reqs: make(chan *seenRequest, 100)}
	u.srv = &http.Server{
		Handler:   u.record(nil),
		ErrorLog:  log.New(io.Discard, "", 0),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}},
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				conns.Add(1)
			}
		},
	}
	go u.srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { u.srv.Close() })
	e := newEnv(t, Config{
		Rules:       compileRules(t, protoRule("pass", "secure.allowed.test", u.port, rules.HTTPS)),
		OriginalDst: fixedOrig{u.orig()},
	})
	return e, u, ca, &conns
}

// curlTLS runs curl doing its own TLS (trusting only ca) to url, connected
// to the proxy as the BPF redirect would; it returns status and body, or
// curl's failure.
func curlTLS(t *testing.T, e *env, ca *testCA, url string, args ...string) (int, string, error) {
	t.Helper()
	bin, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed (apt-get install curl)")
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	host := strings.SplitN(strings.TrimPrefix(url, "https://"), "/", 2)[0]
	argv := append([]string{"-sS", "--cacert", caFile, "--connect-to", host + ":" + e.addr, "-w", "\n%{http_code}", url}, args...)
	out, err := exec.CommandContext(ctx, bin, argv...).CombinedOutput()
	if err != nil {
		return 0, "", fmt.Errorf("curl %v: %w (%s)", argv, err, out)
	}
	s := string(out)
	i := strings.LastIndexByte(s, '\n')
	var code int
	fmt.Sscan(s[i+1:], &code)
	return code, s[:i], nil
}

func TestTLSPassthroughCurl(t *testing.T) {
	e, u, ca, conns := passEnv(t)

	// Allowed: curl's own TLS session reaches the upstream (its certificate
	// verified by curl against the test CA, h2 negotiated end to end).
	code, body, err := curlTLS(t, e, ca, fmt.Sprintf("https://secure.allowed.test:%d/pass", u.port), "--http2")
	if err != nil || code != 200 || body != fmt.Sprintf("hello secure.allowed.test:%d/pass", u.port) {
		t.Fatalf("allowed: %d %q %v", code, body, err)
	}
	if got := u.next(t); got.SNI != "secure.allowed.test" || got.Proto != "HTTP/2.0" {
		t.Fatalf("upstream saw SNI %q over %s, want secure.allowed.test over HTTP/2.0", got.SNI, got.Proto)
	}
	if conns.Load() != 1 {
		t.Fatalf("upstream accepted %d connections, want 1", conns.Load())
	}

	// Denied: the connection is closed; the upstream sees nothing at all.
	_, _, err = curlTLS(t, e, ca, fmt.Sprintf("https://denied.test:%d/", u.port))
	if err == nil {
		t.Fatal("denied name: curl succeeded")
	}
	if conns.Load() != 1 {
		t.Fatalf("upstream accepted %d connections, want still 1", conns.Load())
	}
	u.none(t)
	if n := e.counter("egressd_requests_total", "decision", "deny", "protocol", "tls-passthrough"); n != 1 {
		t.Errorf("deny counter %v, want 1", n)
	}
	waitForLog(t, e, `"host":"secure.allowed.test","port":`+fmt.Sprint(u.port)+`,"protocol":"tls-passthrough","upstream":"tls","rule":"pass","decision":"allow"`)
	waitForLog(t, e, `"host":"denied.test","port":`+fmt.Sprint(u.port)+`,"protocol":"tls-passthrough","upstream":"","rule":"","decision":"deny"`)
}

func TestTLSPassthroughRefusals(t *testing.T) {
	e, _, _, conns := passEnv(t)
	tests := []struct {
		name     string
		talk     func(net.Conn) error
		decision string
		alert    string // the TLS alert the client gets (issue 22 item 8); "": none
	}{
		{"no SNI", func(c net.Conn) error {
			return tls.Client(c, &tls.Config{InsecureSkipVerify: true}).Handshake()
		}, "deny", "unrecognized name"},
		{"IP literal (no SNI)", func(c net.Conn) error {
			return tls.Client(c, &tls.Config{ServerName: "127.0.0.1", InsecureSkipVerify: true}).Handshake()
		}, "deny", "unrecognized name"},
		{"denied SNI", func(c net.Conn) error {
			return tls.Client(c, &tls.Config{ServerName: "denied.test", InsecureSkipVerify: true}).Handshake()
		}, "deny", "access denied"},
		{"garbage after the record header", func(c net.Conn) error {
			if _, err := c.Write([]byte("\x16\x03\x01\x00\x08not tls!")); err != nil {
				return err
			}
			_, err := c.Read(make([]byte, 1))
			return err
		}, "invalid", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", e.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			err = tt.talk(c)
			if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("got %v, want the proxy to close the connection", err)
			}
			if tt.alert != "" && !strings.Contains(err.Error(), "remote error: tls: "+tt.alert) {
				t.Errorf("the client got %q, want the TLS alert %q", err, tt.alert)
			}
			// The alert reaches the client before the proxy logs and counts.
			waitFor(t, func() bool {
				return e.counter("egressd_requests_total", "decision", tt.decision, "protocol", "tls-passthrough") >= 1
			})
		})
	}
	if conns.Load() != 0 {
		t.Fatalf("upstream accepted %d connections, want 0", conns.Load())
	}
}

// The bytes cross untouched both ways, and each side's half-close reaches
// the other while the opposite direction still flows; also for a hello
// larger than the proxy's read buffer.
func TestTLSPassthroughSplicesBytesWithHalfClose(t *testing.T) {
	var bigALPN []string
	for i := range 40 {
		bigALPN = append(bigALPN, fmt.Sprintf("proto-%03d-%s", i, strings.Repeat("x", 150)))
	}
	for _, tc := range []struct {
		name string
		cfg  *tls.Config
	}{
		{"small hello", &tls.Config{ServerName: "raw.allowed.test"}},
		{"hello over 6 KiB", &tls.Config{ServerName: "raw.allowed.test", NextProtos: bigALPN}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hello := snitest.Record(t, tc.cfg)
			sent := append(append([]byte(nil), hello...), "\x17\x03\x03\x00\x04data"...)
			testSplice(t, sent)
		})
	}
}

func testSplice(t *testing.T, sent []byte) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c) // until the client's half-close arrives
		got <- b
		c.Write([]byte("answer after EOF"))
	}()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	e := newEnv(t, Config{
		Rules:       compileRules(t, protoRule("pass", "raw.allowed.test", port, rules.HTTPS)),
		OriginalDst: fixedOrig{netip4Loopback(port)},
	})
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write(sent[:3]) // the proxy must wait for the rest of the record
	time.Sleep(10 * time.Millisecond)
	c.Write(sent[3:])
	c.(*net.TCPConn).CloseWrite()
	answer, err := io.ReadAll(c)
	if err != nil || string(answer) != "answer after EOF" {
		t.Fatalf("client read %q, %v", answer, err)
	}
	if b := <-got; !bytes.Equal(b, sent) {
		t.Fatalf("upstream received %d bytes, want the %d sent, unchanged", len(b), len(sent))
	}
	waitForLog(t, e, fmt.Sprintf(`"bytes_in":%d,"bytes_out":16`, len(sent)))
}

// waitForLog waits for the proxy to log want: a connection's entry is
// written when the proxy has finished with it, which the client cannot see.
func waitForLog(t *testing.T, e *env, want string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if strings.Contains(e.logs.String(), want) {
			return
		}
	}
	t.Fatalf("log %q lacks %q", e.logs.String(), want)
}

// TestTLSPassthroughResetAfterDownloadIsANormalEnd: a client that has read
// its whole response and closes with a reset (as curl may) ends the
// connection normally; the access log does not call it a failure.
func TestTLSPassthroughResetAfterDownloadIsANormalEnd(t *testing.T) {
	e, u, ca, _ := passEnv(t)
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	tc := tls.Client(c, &tls.Config{ServerName: "secure.allowed.test", RootCAs: ca.pool, NextProtos: []string{"http/1.1"}})
	tc.Write([]byte("GET /dl HTTP/1.1\r\nHost: secure.allowed.test\r\n\r\n"))
	resp, err := http.ReadResponse(bufio.NewReader(tc), &http.Request{Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(resp.Body); err != nil || resp.StatusCode != 200 {
		t.Fatalf("got %d %q %v", resp.StatusCode, b, err)
	}
	u.next(t)
	c.(*net.TCPConn).SetLinger(0) // close with a reset
	c.Close()
	waitForLog(t, e, `"protocol":"tls-passthrough"`)
	if strings.Contains(e.logs.String(), "spliced connection failed") {
		t.Fatalf("a completed download logged as a failure: %s", e.logs.String())
	}
}
