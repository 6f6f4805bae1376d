package l7

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/egressd/egressd/l7/internal/h1"
)

// benchUpstream is a minimal keep-alive HTTP/1.1 server answering every
// request head with a fixed 100-byte body, so that the benchmarks measure
// the proxy rather than the upstream.
func benchUpstream(b *testing.B) netip.AddrPort {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n" + strings.Repeat("x", 100))
	done := make(chan struct{})
	var conns []net.Conn
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
			go func() {
				br := bufio.NewReader(c)
				for {
					if err := skipHead(br); err != nil {
						c.Close()
						return
					}
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	b.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return netip.MustParseAddrPort(ln.Addr().String())
}

// skipHead reads a message head and returns its Content-Length (0: none).
func skipHead(br *bufio.Reader) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) == 2 {
			return nil
		}
	}
}

// roundTrip writes req and reads one response with a Content-Length body.
func roundTrip(b *testing.B, c net.Conn, br *bufio.Reader, req []byte) {
	if _, err := c.Write(req); err != nil {
		b.Fatal(err)
	}
	n := -1
	// Only BenchmarkProxyDenied measures refusals; anywhere else a 403 is
	// a broken set-up.
	want := "200"
	if bytes.Contains(req, []byte("evil.example.test")) {
		want = "403"
	}
	if status, err := br.Peek(12); err != nil || string(status[9:12]) != want {
		b.Fatalf("response %q, %v: want %s", status, err, want)
	}
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			b.Fatal(err)
		}
		if len(line) == 2 {
			break
		}
		if bytes.HasPrefix(line, []byte("Content-Length: ")) {
			n = 0
			for _, d := range line[16 : len(line)-2] {
				n = n*10 + int(d-'0')
			}
		}
	}
	if n < 0 {
		b.Fatal("response without Content-Length")
	}
	if _, err := br.Discard(n); err != nil {
		b.Fatal(err)
	}
}

func benchProxy(b *testing.B, up netip.AddrPort, logger *slog.Logger) *env {
	return newEnv(b, Config{
		Rules: compileRules(b,
			httpRule("wild", "*.allowed.test", up.Port()),
			httpRule("exact", "exact.whitelisted.test", up.Port())),
		OriginalDst: fixedOrig{up},
		// DialResolve with the test Dial (every name is 127.0.0.1): no
		// DNS. DialOriginal looks the name up on every new upstream
		// connection, and api.allowed.test does not resolve: since
		// e194fde every request here was a failed lookup and a 403.
		DialMode: DialResolve,
		Logger:   logger,
	})
}

const benchRequest = "GET /bench HTTP/1.1\r\nHost: api.allowed.test\r\nUser-Agent: bench/1\r\nAccept: */*\r\n\r\n"

func runKeepAlive(b *testing.B, addr, req string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	r := []byte(req)
	roundTrip(b, c, br, r) // warm the upstream pool
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	for i := 0; i < b.N; i++ {
		roundTrip(b, c, br, r)
	}
	reportCPU(b, cpu0)
}

// processCPU is the CPU time (user+system) used by this process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports CPU time per operation (client, proxy and upstream
// together, all in this process): less disturbed by a busy machine than
// ns/op. BenchmarkProxy* minus BenchmarkDirect is the proxy's share.
func reportCPU(b *testing.B, since time.Duration) {
	b.ReportMetric(float64(processCPU()-since)/float64(b.N), "cpu-ns/op")
}

// BenchmarkDirect is the floor: the client talks to the upstream itself.
func BenchmarkDirect(b *testing.B) {
	up := benchUpstream(b)
	runKeepAlive(b, up.String(), benchRequest)
}

// BenchmarkProxyAllowedKeepAlive: allowed requests on one keep-alive client
// connection through the proxy to a pooled upstream connection.
func BenchmarkProxyAllowedKeepAlive(b *testing.B) {
	b.Run("log=off", func(b *testing.B) {
		e := benchProxy(b, benchUpstream(b), slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn})))
		runKeepAlive(b, e.addr, benchRequest)
	})
	b.Run("log=json", func(b *testing.B) {
		e := benchProxy(b, benchUpstream(b), slog.New(slog.NewJSONHandler(io.Discard, nil)))
		runKeepAlive(b, e.addr, benchRequest)
	})
	b.Run("log=json-file", func(b *testing.B) { // one write(2) per line, as with a log file or pipe
		f, err := os.Create(filepath.Join(b.TempDir(), "access.log"))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		e := benchProxy(b, benchUpstream(b), slog.New(slog.NewJSONHandler(f, nil)))
		runKeepAlive(b, e.addr, benchRequest)
	})
	for _, asJSON := range []bool{true, false} { // l7's own encoder, lines written in batches (as egressd run does)
		b.Run(map[bool]string{true: "log=json-file-buffered", false: "log=text-file-buffered"}[asJSON], func(b *testing.B) {
			f, err := os.Create(filepath.Join(b.TempDir(), "access.log"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			al := NewAccessLog(f, AccessLogOptions{JSON: asJSON})
			defer al.Close()
			e := benchProxy(b, benchUpstream(b), slog.New(al))
			runKeepAlive(b, e.addr, benchRequest)
		})
	}
}

// BenchmarkProxyAllowedNewConnection: a new client connection per request
// ("Connection: close"), the upstream connection pooled.
func BenchmarkProxyAllowedNewConnection(b *testing.B) {
	e := benchProxy(b, benchUpstream(b), slog.New(slog.NewJSONHandler(io.Discard, nil)))
	req := []byte(strings.Replace(benchRequest, "\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1))
	br := bufio.NewReader(nil)
	b.ReportAllocs()
	cpu0 := processCPU()
	for i := 0; i < b.N; i++ {
		c, err := net.Dial("tcp", e.addr)
		if err != nil {
			b.Fatal(err)
		}
		br.Reset(c)
		roundTrip(b, c, br, req)
		c.Close()
	}
	reportCPU(b, cpu0)
}

// BenchmarkProxyDenied: denied requests answered by the proxy itself.
func BenchmarkProxyDenied(b *testing.B) {
	e := benchProxy(b, benchUpstream(b), slog.New(slog.NewJSONHandler(io.Discard, nil)))
	runKeepAlive(b, e.addr, strings.Replace(benchRequest, "api.allowed.test", "evil.example.test", 1))
}

// BenchmarkProxyAllowedParallel: several client connections at once.
func BenchmarkProxyAllowedParallel(b *testing.B) {
	e := benchProxy(b, benchUpstream(b), slog.New(slog.NewJSONHandler(io.Discard, nil)))
	b.ReportAllocs()
	b.SetParallelism(8)
	cpu0 := processCPU()
	defer reportCPU(b, cpu0)
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("tcp", e.addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		r := []byte(benchRequest)
		for pb.Next() {
			roundTrip(b, c, br, r)
		}
	})
}

// BenchmarkReadRequest: the request-head reader, parser and checks.
func BenchmarkReadRequest(b *testing.B) {
	req := []byte("GET /api/v1/items?limit=10 HTTP/1.1\r\nHost: api.allowed.test\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n" +
		"Accept: application/json\r\nAccept-Encoding: gzip, deflate\r\nAccept-Language: en-US,en;q=0.9\r\n" +
		"Connection: keep-alive\r\nCookie: session=0123456789abcdef\r\nX-Request-Id: 5f0c6a8e-4d7b-4a8e-9c1f-2b3c4d5e6f70\r\n\r\n")
	rd := bytes.NewReader(req)
	br := bufio.NewReader(rd)
	var r h1.Request
	b.ReportAllocs()
	b.SetBytes(int64(len(req)))
	for i := 0; i < b.N; i++ {
		rd.Reset(req)
		br.Reset(rd)
		if err := r.ReadHead(br, DefaultMaxHeaderBytes); err != nil {
			b.Fatal(err)
		}
		if err := r.Parse(); err != nil {
			b.Fatal(err)
		}
		if st, reason := r.Check(); st != 0 {
			b.Fatal(reason)
		}
	}
}
