package l7

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/l7/internal/sni/snitest"
	"github.com/egressd/egressd/rules"
)

// spliceEnv starts a TLS-passthrough proxy with idle timeout idle in front of
// a raw upstream running serve on each connection, and connects a client
// that sends a ClientHello for raw.allowed.test.
func spliceEnv(t *testing.T, idle time.Duration, serve func(net.Conn)) (*env, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		serve(c)
	}()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	e := newEnv(t, Config{
		Rules:       compileRules(t, protoRule("pass", "raw.allowed.test", port, rules.HTTPS)),
		OriginalDst: fixedOrig{netip4Loopback(port)},
		IdleTimeout: idle,
	})
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(snitest.Record(t, &tls.Config{ServerName: "raw.allowed.test"})); err != nil {
		t.Fatal(err)
	}
	return e, c
}

// After the upstream half-closes, a client that stays half-open and silent
// holds the splice no longer than the idle timeout: the proxy closes both
// sides and logs the connection, without waiting for Shutdown.
func TestSpliceHalfOpenPeerGetsIdleGrace(t *testing.T) {
	upstreamSaw := make(chan error, 1)
	e, c := spliceEnv(t, 200*time.Millisecond, func(up net.Conn) {
		up.(*net.TCPConn).CloseWrite() // done talking, still listening
		up.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := io.Copy(io.Discard, up)
		upstreamSaw <- err
	})
	if b, err := io.ReadAll(c); err != nil || len(b) != 0 { // the upstream's half-close arrives
		t.Fatalf("client read %q, %v; want EOF", b, err)
	}
	// The client neither writes nor closes.
	waitForLog(t, e, `"protocol":"tls-passthrough","upstream":"tls","rule":"pass","decision":"allow"`)
	if err := <-upstreamSaw; err != nil {
		t.Fatalf("upstream: %v; want the proxy to close it", err)
	}
}

// The grace is an idle bound, not a deadline: the open direction keeps
// flowing past it as long as bytes keep coming.
func TestSpliceOpenDirectionFlowsPastGrace(t *testing.T) {
	const chunks = 8
	idle := 150 * time.Millisecond
	_, c := spliceEnv(t, idle, func(up net.Conn) {
		io.Copy(io.Discard, up) // until the client's half-close
		for i := range chunks {
			fmt.Fprintf(up, "chunk %d\n", i)
			time.Sleep(idle / 2)
		}
	})
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	var want bytes.Buffer
	for i := range chunks {
		fmt.Fprintf(&want, "chunk %d\n", i)
	}
	if err != nil || string(got) != want.String() {
		t.Fatalf("client read %q, %v; want %d chunks", got, err, strings.Count(want.String(), "\n"))
	}
}
