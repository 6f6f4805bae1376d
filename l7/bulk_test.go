package l7

import (
	"bufio"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/l7/internal/body"
)

// bulkSize is odd on purpose: neither the pipe nor any buffer divides it.
const bulkSize = 8<<20 + 12345

// bulkData returns n bytes of seeded random data and their SHA-256.
func bulkData(n int) ([]byte, string) {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{20})
	r.Read(b)
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:])
}

// bulkUpstream serves, on every connection until it ends:
//
//	GET /cl      data with Content-Length
//	GET /chunked data in chunks of 1 MiB + 17 bytes
//	GET /close   data without framing, HTTP/1.0 style: until the close
//	GET /cut     Content-Length len(data), half of it, then a close
//	GET /stall   Content-Length len(data), half of it, then silence until the peer closes
//	POST /sink   reads the body (either framing); answers "size sha256"
//	POST /drop   reads half the body, then closes without an answer
//	POST /null   reads the body; answers its size (the benchmark's sink)
func bulkUpstream(t testing.TB, cert *tls.Certificate, data []byte) *scriptedUpstream {
	return newScriptedUpstream(t, cert, func(u *scriptedUpstream, i int, c net.Conn, br *bufio.Reader) {
		c.SetDeadline(time.Now().Add(time.Minute))
		for {
			r, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			u.reqs <- r
			bw := bufio.NewWriterSize(c, 64<<10)
			switch r.URL.Path {
			case "/cl":
				fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(data))
				bw.Write(data)
			case "/chunked":
				io.WriteString(bw, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
				for rest := data; len(rest) > 0; {
					k := min(len(rest), 1<<20+17)
					fmt.Fprintf(bw, "%x\r\n", k)
					bw.Write(rest[:k])
					io.WriteString(bw, "\r\n")
					rest = rest[k:]
				}
				io.WriteString(bw, "0\r\n\r\n")
			case "/close":
				io.WriteString(bw, "HTTP/1.0 200 OK\r\n\r\n")
				bw.Write(data)
				bw.Flush()
				return
			case "/cut", "/stall":
				fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(data))
				bw.Write(data[:len(data)/2])
				bw.Flush()
				if r.URL.Path == "/stall" {
					io.Copy(io.Discard, c) // until the proxy gives up
				}
				return
			case "/sink":
				h := sha256.New()
				n, err := io.Copy(h, r.Body)
				if err != nil {
					return
				}
				body := fmt.Sprintf("%d %x", n, h.Sum(nil))
				fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
			case "/null":
				n, err := io.Copy(io.Discard, r.Body)
				if err != nil {
					return
				}
				body := strconv.FormatInt(n, 10)
				fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
			case "/drop":
				io.CopyN(io.Discard, r.Body, r.ContentLength/2)
				return
			}
			if bw.Flush() != nil {
				return
			}
		}
	})
}

// readAllHash reads resp's body and returns its size and SHA-256.
func readAllHash(resp *http.Response) (int64, string, error) {
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	return n, hex.EncodeToString(h.Sum(nil)), err
}

// Bodies of a few MiB in every framing, both ways, through plain TCP (the
// splice path) and with TLS originated (large reads): what arrives at the
// other end has the size and hash that was sent, the connections stay
// usable, and an upstream connection whose body was fully relayed is reused
// for the next request.
func TestBulkBodiesArriveWhole(t *testing.T) {
	data, sum := bulkData(bulkSize)
	withTLS(t, func(t *testing.T, ca *testCA, cert *tls.Certificate) {
		u := bulkUpstream(t, cert, data)
		e := scriptedEnv(t, u, ca)
		spliced0, copied0 := body.DirectMoved.Spliced.Load(), body.DirectMoved.Copied.Load()
		rc := e.dial()
		rc.c.SetDeadline(time.Now().Add(30 * time.Second))
		for _, path := range []string{"/cl", "/chunked", "/cl"} {
			rc.send("GET " + path + " HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n")
			resp, err := http.ReadResponse(rc.br, &http.Request{Method: "GET"})
			if err != nil {
				t.Fatalf("GET %s: %v", path, err)
			}
			n, got, err := readAllHash(resp)
			if err != nil || n != bulkSize || got != sum {
				t.Fatalf("GET %s: %d bytes, sha256 %s, %v; want %d bytes, %s", path, n, got, err, bulkSize, sum)
			}
		}
		for _, framing := range []string{"Content-Length: " + strconv.Itoa(bulkSize), "Transfer-Encoding: chunked"} {
			rc.send("POST /sink HTTP/1.1\r\nHost: a.allowed.test\r\n" + framing + "\r\n\r\n")
			if strings.HasPrefix(framing, "Content-Length") {
				rc.send(string(data))
			} else {
				for rest := data; len(rest) > 0; {
					k := min(len(rest), 300_001)
					rc.send(fmt.Sprintf("%x\r\n%s\r\n", k, rest[:k]))
					rest = rest[k:]
				}
				rc.send("0\r\n\r\n")
			}
			if resp, body := rc.read("POST"); resp.StatusCode != 200 || body != fmt.Sprintf("%d %s", bulkSize, sum) {
				t.Fatalf("POST (%s): upstream got %q (status %d), want %d %s", framing, body, resp.StatusCode, bulkSize, sum)
			}
		}
		// One client connection, five exchanges in a row: every body ended
		// where its framing said, so one upstream connection served them all.
		if n := u.conns.Load(); n != 1 {
			t.Fatalf("the upstream saw %d connections for 5 sequential requests, want 1 (reused)", n)
		}
		// The bodies went around the buffers: spliced over plain TCP,
		// copied in large reads with TLS on a side.
		spliced, copied := body.DirectMoved.Spliced.Load()-spliced0, body.DirectMoved.Copied.Load()-copied0
		if ca == nil && spliced < 4*bulkSize {
			t.Fatalf("plain TCP: %d bytes spliced, want most of 5 × %d", spliced, bulkSize)
		}
		if ca != nil && (spliced != 0 || copied < 4*bulkSize) {
			t.Fatalf("TLS upstream: %d bytes spliced, %d copied directly; want 0 and most of 5 × %d", spliced, copied, bulkSize)
		}
	})
}

// A response without framing (HTTP/1.0, read until the upstream closes)
// arrives whole, spliced past its first bytes, and its connection is closed.
func TestBulkUntilCloseArrivesWhole(t *testing.T) {
	data, sum := bulkData(bulkSize)
	u := bulkUpstream(t, nil, data)
	e := scriptedEnv(t, u, nil)
	spliced0 := body.DirectMoved.Spliced.Load()
	rc := e.dial()
	rc.c.SetDeadline(time.Now().Add(30 * time.Second))
	rc.send("GET /close HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n")
	resp, err := http.ReadResponse(rc.br, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	if n, got, err := readAllHash(resp); err != nil || n != bulkSize || got != sum {
		t.Fatalf("%d bytes, %s, %v; want %d, %s", n, got, err, bulkSize, sum)
	}
	if !rc.closed() {
		t.Fatal("the client connection stayed open after a body read until close")
	}
	if d := body.DirectMoved.Spliced.Load() - spliced0; d < bulkSize-body.DirectMin-4096 {
		t.Fatalf("%d bytes spliced, want all but the first %d", d, body.DirectMin)
	}
}

// An upstream that ends or stalls in the middle of a spliced response
// body: the client sees a cut body (never a whole one, never bytes of
// another response), the access log says why, and the upstream connection
// is not reused — the next request gets a fresh one and its own answer.
func TestBulkUpstreamStopsMidBody(t *testing.T) {
	data, sum := bulkData(bulkSize)
	for _, tc := range []struct{ path, reason string }{
		{"/cut", `"reason":"response body cut: `},
		{"/stall", `"reason":"response body cut: `},
	} {
		t.Run(tc.path, func(t *testing.T) {
			u := bulkUpstream(t, nil, data)
			e := scriptedEnv(t, u, nil, func(c *Config) { c.IdleTimeout = 300 * time.Millisecond })
			rc := e.dial()
			rc.c.SetDeadline(time.Now().Add(20 * time.Second))
			rc.send("GET " + tc.path + " HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n")
			resp, err := http.ReadResponse(rc.br, &http.Request{Method: "GET"})
			if err != nil {
				t.Fatal(err)
			}
			n, _, err := readAllHash(resp)
			if !errors.Is(err, io.ErrUnexpectedEOF) || n >= bulkSize {
				t.Fatalf("client read %d of %d bytes, %v; want a cut body (unexpected EOF)", n, bulkSize, err)
			}
			if n < bulkSize/2-body.DirectMin {
				t.Fatalf("client read %d bytes, want the %d the upstream sent", n, bulkSize/2)
			}
			waitForLog(t, e, tc.reason)

			rc2 := e.dial()
			rc2.c.SetDeadline(time.Now().Add(20 * time.Second))
			rc2.send("GET /cl HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n")
			resp, err = http.ReadResponse(rc2.br, &http.Request{Method: "GET"})
			if err != nil {
				t.Fatal(err)
			}
			if n, got, err := readAllHash(resp); err != nil || n != bulkSize || got != sum {
				t.Fatalf("next request: %d bytes, %s, %v; want the whole body", n, got, err)
			}
			if c := u.conns.Load(); c != 2 {
				t.Fatalf("upstream connections: %d, want 2 (the cut one is never reused)", c)
			}
		})
	}
}

// An upstream that stops reading in the middle of a spliced upload and
// closes: the client is answered 502 (no byte of a response came), and the
// next request goes over a new upstream connection.
func TestBulkUploadUpstreamStopsMidBody(t *testing.T) {
	data, sum := bulkData(bulkSize)
	u := bulkUpstream(t, nil, data)
	e := scriptedEnv(t, u, nil)
	rc := e.dial()
	rc.c.SetDeadline(time.Now().Add(20 * time.Second))
	rc.send("POST /drop HTTP/1.1\r\nHost: a.allowed.test\r\nContent-Length: " + strconv.Itoa(bulkSize) + "\r\n\r\n")
	go rc.c.Write(data) // may fail once the proxy gives up on the body
	resp, err := http.ReadResponse(rc.br, &http.Request{Method: "POST"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 502 {
		t.Fatalf("got %d, want 502", resp.StatusCode)
	}
	// Whether the proxy had sent the whole body into the kernel's buffers
	// before the reset decides the reason; 502 either way.
	waitForLog(t, e, `"status":502`)

	rc2 := e.dial()
	rc2.c.SetDeadline(time.Now().Add(20 * time.Second))
	rc2.send("POST /sink HTTP/1.1\r\nHost: a.allowed.test\r\nContent-Length: " + strconv.Itoa(bulkSize) + "\r\n\r\n" + string(data))
	if resp, body := rc2.read("POST"); resp.StatusCode != 200 || body != fmt.Sprintf("%d %s", bulkSize, sum) {
		t.Fatalf("next upload: %d %q", resp.StatusCode, body)
	}
	if c := u.conns.Load(); c != 2 {
		t.Fatalf("upstream connections: %d, want 2", c)
	}
}

// A client that leaves in the middle of a spliced download: the upstream
// connection is closed (the upstream's write fails instead of going on for
// nobody), and the access log says the client went away.
func TestBulkClientGoneMidBody(t *testing.T) {
	data, _ := bulkData(64 << 20)
	u := bulkUpstream(t, nil, data)
	e := scriptedEnv(t, u, nil)
	rc := e.dial()
	rc.c.SetDeadline(time.Now().Add(20 * time.Second))
	rc.send("GET /cl HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n")
	resp, err := http.ReadResponse(rc.br, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, resp.Body, 1<<20); err != nil {
		t.Fatal(err)
	}
	rc.c.Close()
	waitForLog(t, e, `"reason":"client went away during the response body"`)
	for deadline := time.Now().Add(10 * time.Second); u.open.Load() != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the upstream connection is still open after its client left")
		}
	}
}

// A client that stalls in the middle of a spliced upload is cut after the
// idle timeout: the upstream never takes the cut body for a whole one (its
// connection is closed under it), and the access log says why.
func TestBulkUploadClientStallsMidBody(t *testing.T) {
	data, _ := bulkData(bulkSize)
	u := bulkUpstream(t, nil, data)
	e := scriptedEnv(t, u, nil, func(c *Config) { c.IdleTimeout = 300 * time.Millisecond })
	rc := e.dial()
	rc.c.SetDeadline(time.Now().Add(20 * time.Second))
	rc.send("POST /sink HTTP/1.1\r\nHost: a.allowed.test\r\nContent-Length: " + strconv.Itoa(bulkSize) + "\r\n\r\n")
	rc.send(string(data[:bulkSize/2])) // then nothing
	waitForLog(t, e, `"reason":"client went away during the request body"`)
	if !rc.closed() {
		t.Fatal("the stalled client's connection stayed open")
	}
	for deadline := time.Now().Add(10 * time.Second); u.open.Load() != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the upstream connection is still open")
		}
	}
	select {
	case r := <-u.reqs:
		if r.URL.Path != "/sink" {
			t.Fatalf("upstream saw %s", r.URL.Path)
		}
	default:
		t.Fatal("the upstream saw no request")
	}
}

// BenchmarkBulk moves one 64 MiB body per op through the proxy, each way
// and framing, with the direct path (splice) and without it (directMin out
// of reach: the buffered pump). cpu-ns/op is the whole process's: client,
// proxy and upstream.
func BenchmarkBulk(b *testing.B) {
	data, _ := bulkData(64 << 20)
	u := bulkUpstream(b, nil, data)
	e := newEnv(b, Config{
		Rules:       compileRules(b, httpRule("wild", "*.allowed.test", u.port)),
		OriginalDst: fixedOrig{u.orig()},
	})
	chunked := func(c net.Conn) {
		for rest := data; len(rest) > 0; {
			k := min(len(rest), 1<<20)
			fmt.Fprintf(c, "%x\r\n", k)
			c.Write(rest[:k])
			io.WriteString(c, "\r\n")
			rest = rest[k:]
		}
		io.WriteString(c, "0\r\n\r\n")
	}
	for _, tc := range []struct {
		name, head string
		body       func(net.Conn)
	}{
		{"download", "GET /cl HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n", nil},
		{"download-chunked", "GET /chunked HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n", nil},
		{"upload", "POST /null HTTP/1.1\r\nHost: a.allowed.test\r\nContent-Length: " + strconv.Itoa(len(data)) + "\r\n\r\n",
			func(c net.Conn) { c.Write(data) }},
		{"upload-chunked", "POST /null HTTP/1.1\r\nHost: a.allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n", chunked},
	} {
		for _, direct := range []bool{true, false} {
			b.Run(fmt.Sprintf("%s/direct=%v", tc.name, direct), func(b *testing.B) {
				if !direct {
					old := body.DirectMin
					body.DirectMin = 1 << 62
					b.Cleanup(func() { body.DirectMin = old })
				}
				c, err := net.Dial("tcp", e.addr)
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				br := bufio.NewReaderSize(c, 64<<10)
				b.SetBytes(int64(len(data)))
				b.ReportAllocs()
				cpu0 := processCPU()
				for b.Loop() {
					io.WriteString(c, tc.head)
					if tc.body != nil {
						tc.body(c)
					}
					resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
					if err != nil {
						b.Fatal(err)
					}
					n, err := io.Copy(io.Discard, resp.Body)
					if err != nil || resp.StatusCode != 200 || tc.body == nil && n != int64(len(data)) {
						b.Fatalf("%d, %d bytes, %v", resp.StatusCode, n, err)
					}
				}
				reportCPU(b, cpu0)
			})
		}
	}
}
