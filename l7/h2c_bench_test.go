package l7

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/egressd/egressd/l7/internal/h2c"
	"github.com/egressd/egressd/rules"
)

// benchH2CEnv: an h2c upstream answering 100 bytes and a proxy allowing
// api.allowed.test on it (access log on, as in production).
func benchH2CEnv(b *testing.B) (*env, *upstream) {
	body := []byte(strings.Repeat("x", 100))
	u, _ := newH2CUpstream(b, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write(body)
	}, true)
	e := newEnv(b, Config{
		Rules:       compileRules(b, protoRule("h2-api", "api.allowed.test", u.port, rules.HTTP2)),
		OriginalDst: fixedOrig{u.orig()},
		Logger:      slog.New(slog.NewJSONHandler(io.Discard, nil)),
	})
	return e, u
}

// benchH2Client is an h2c client whose every connection goes to addr.
func benchH2Client(b *testing.B, addr string) *http.Client {
	tr := &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, _ string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
	b.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func benchH2Get(b *testing.B, c *http.Client, host string) {
	req, _ := http.NewRequest("GET", "http://bench/h2", nil)
	req.Host = host
	res, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != 200 {
		b.Fatalf("status %d", res.StatusCode)
	}
}

// BenchmarkH2CForward: h2c GET requests on one client connection, straight
// to the upstream (the floor) and through the proxy; "parallel" multiplexes
// concurrent streams on that one connection.
func BenchmarkH2CForward(b *testing.B) {
	e, u := benchH2CEnv(b)
	for _, bc := range []struct{ name, addr string }{{"direct", u.ln.Addr().String()}, {"proxy", e.addr}} {
		b.Run(bc.name, func(b *testing.B) {
			c := benchH2Client(b, bc.addr)
			benchH2Get(b, c, "api.allowed.test")
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				benchH2Get(b, c, "api.allowed.test")
			}
		})
		b.Run(bc.name+"/parallel", func(b *testing.B) {
			c := benchH2Client(b, bc.addr)
			benchH2Get(b, c, "api.allowed.test")
			b.ReportAllocs()
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					benchH2Get(b, c, "api.allowed.test")
				}
			})
		})
	}
}

// BenchmarkGRPCUnary: small unary gRPC calls on one client connection,
// straight to the upstream and through the proxy.
func BenchmarkGRPCUnary(b *testing.B) {
	u := newGRPCUpstream(b, nil)
	done := make(chan struct{})
	go func() { // the upstream records every call: drain the records
		for {
			select {
			case <-u.calls:
			case <-done:
				return
			}
		}
	}()
	b.Cleanup(func() { close(done) })
	e := newEnv(b, Config{
		Rules:       compileRules(b, protoRule("grpc-api", "api.allowed.test", u.port, rules.GRPC)),
		OriginalDst: fixedOrig{netip4Loopback(u.port)},
		Logger:      slog.New(slog.NewJSONHandler(io.Discard, nil)),
	})
	direct := fmt.Sprintf("127.0.0.1:%d", u.port)
	for _, bc := range []struct{ name, addr string }{{"direct", direct}, {"proxy", e.addr}} {
		b.Run(bc.name, func(b *testing.B) {
			cc, err := grpc.NewClient("passthrough:///api.allowed.test",
				grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
					var d net.Dialer
					return d.DialContext(ctx, "tcp", bc.addr)
				}))
			if err != nil {
				b.Fatal(err)
			}
			defer cc.Close()
			client := testgrpc.NewTestServiceClient(cc)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			req := &testgrpc.SimpleRequest{ResponseSize: 100, Payload: payload(100)}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := client.UnaryCall(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkH2CUpload: 1 MiB request bodies through the proxy on one h2c
// connection (one stream at a time, and 8 at once), for flow-control
// windows (h2c.UploadBuffer, connection/stream) from 64 KiB to x/net's
// default of 1 MiB. SetBytes: MB/s is the upload rate.
func BenchmarkH2CUpload(b *testing.B) {
	saved := h2c.UploadBuffer
	b.Cleanup(func() { h2c.UploadBuffer = saved })
	body := strings.Repeat("x", 1<<20)
	for _, w := range []struct{ Conn, Stream int32 }{{64 << 10, 64 << 10}, {128 << 10, 128 << 10}, {256 << 10, 128 << 10}, {1 << 20, 1 << 20}} {
		h2c.UploadBuffer = w // read when the proxy serves its first h2c connection
		e, _ := benchH2CEnv(b)
		name := fmt.Sprintf("window=%dK-%dK", w.Conn>>10, w.Stream>>10)
		upload := func(c *http.Client) {
			req, _ := http.NewRequest("POST", "http://bench/up", strings.NewReader(body))
			req.Host = "api.allowed.test"
			res, err := c.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != 200 {
				b.Fatalf("status %d", res.StatusCode)
			}
		}
		b.Run(name, func(b *testing.B) {
			c := benchH2Client(b, e.addr)
			upload(c)
			b.SetBytes(int64(len(body)))
			b.ResetTimer()
			for range b.N {
				upload(c)
			}
		})
		b.Run(name+"/parallel", func(b *testing.B) {
			c := benchH2Client(b, e.addr)
			upload(c)
			b.SetBytes(int64(len(body)))
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					upload(c)
				}
			})
		})
	}
}
