package l7

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

func TestGRPCCallKinds(t *testing.T) {
	e, u := grpcEnv(t, false)
	authority := fmt.Sprintf("api.allowed.test:%d", u.port)
	client := grpcClient(t, e, authority)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-grpc-test-echo-initial", "hi", "x-grpc-test-echo-trailing-bin", "\x00\x01bin")

	t.Run("unary", func(t *testing.T) {
		var header, trailer metadata.MD
		res, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 100, Payload: payload(42)},
			grpc.Header(&header), grpc.Trailer(&trailer))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.GetPayload().GetBody()) != 100 || res.GetUsername() != "42" {
			t.Fatalf("response %d bytes, upstream got %s", len(res.GetPayload().GetBody()), res.GetUsername())
		}
		assertEchoed(t, header, trailer)
		c := u.next(t)
		if c.method != "/grpc.testing.TestService/UnaryCall" || c.authority != authority || c.err != nil || c.tls {
			t.Fatalf("upstream saw %+v", c)
		}
	})
	t.Run("server streaming", func(t *testing.T) {
		stream, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{
			ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1}, {Size: 20, IntervalUs: 1000}, {Size: 300}},
		})
		if err != nil {
			t.Fatal(err)
		}
		var sizes []int
		for {
			res, err := stream.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			sizes = append(sizes, len(res.GetPayload().GetBody()))
		}
		header, _ := stream.Header()
		if fmt.Sprint(sizes) != "[1 20 300]" {
			t.Fatalf("sizes %v", sizes)
		}
		assertEchoed(t, header, stream.Trailer())
		u.next(t)
	})
	t.Run("client streaming", func(t *testing.T) {
		stream, err := client.StreamingInputCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []int32{10, 200, 3000, 40000} {
			if err := stream.Send(&testgrpc.StreamingInputCallRequest{Payload: payload(n)}); err != nil {
				t.Fatal(err)
			}
		}
		res, err := stream.CloseAndRecv()
		if err != nil || res.GetAggregatedPayloadSize() != 43210 {
			t.Fatalf("aggregated %d, %v; want 43210", res.GetAggregatedPayloadSize(), err)
		}
		u.next(t)
	})
	t.Run("bidi", func(t *testing.T) {
		stream, err := client.FullDuplexCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// Ping-pong: each answer must arrive before the next request is sent.
		for i := int32(1); i <= 5; i++ {
			if err := stream.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: i * 7}}}); err != nil {
				t.Fatal(err)
			}
			res, err := stream.Recv()
			if err != nil || len(res.GetPayload().GetBody()) != int(i*7) {
				t.Fatalf("round %d: %d bytes, %v", i, len(res.GetPayload().GetBody()), err)
			}
		}
		stream.CloseSend()
		if _, err := stream.Recv(); err != io.EOF {
			t.Fatalf("after CloseSend: %v, want EOF", err)
		}
		header, _ := stream.Header()
		assertEchoed(t, header, stream.Trailer())
		u.next(t)
	})
	if n := e.counter("egressd_requests_total", "decision", "allow", "protocol", "grpc", "rule", "grpc-api"); n != 4 {
		t.Errorf("allowed grpc requests counted %v, want 4", n)
	}
}

func assertEchoed(t *testing.T, header, trailer metadata.MD) {
	t.Helper()
	if h := header.Get("x-grpc-test-echo-initial"); len(h) != 1 || h[0] != "hi" {
		t.Errorf("header %v", header)
	}
	if tr := trailer.Get("x-grpc-test-echo-trailing-bin"); len(tr) != 1 || tr[0] != "\x00\x01bin" {
		t.Errorf("trailer %v", trailer)
	}
}

func TestGRPCLargeMessages(t *testing.T) {
	e, u := grpcEnv(t, false)
	client := grpcClient(t, e, fmt.Sprintf("api.allowed.test:%d", u.port))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const size = 4 << 20
	res, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: size, Payload: payload(size)})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.GetPayload().GetBody()) != size || res.GetUsername() != fmt.Sprint(size) {
		t.Fatalf("response %d bytes, upstream got %s; want %d both ways", len(res.GetPayload().GetBody()), res.GetUsername(), size)
	}
	u.next(t)
}

func TestGRPCDeadlineAndCancellation(t *testing.T) {
	e, u := grpcEnv(t, false)
	client := grpcClient(t, e, fmt.Sprintf("api.allowed.test:%d", u.port))

	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		stream, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{
			ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1}, {Size: 1, IntervalUs: 30e6}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatalf("first message: %v", err)
		}
		if _, err := stream.Recv(); status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("second message: %v, want DeadlineExceeded", err)
		}
		// The upstream ends the call on its own deadline, or on the reset
		// the proxy forwards when the client's deadline fires first.
		if c := u.next(t); !errors.Is(c.err, context.DeadlineExceeded) && !errors.Is(c.err, context.Canceled) {
			t.Fatalf("upstream call ended with %v, want it cut short", c.err)
		}
	})
	t.Run("upstream deadline first", func(t *testing.T) {
		// A client without a timer of its own: the upstream's deadline
		// (grpc-go resets the stream with CANCEL) must come out as
		// DEADLINE_EXCEEDED, not as a broken stream.
		msg, err := proto.Marshal(&testgrpc.StreamingOutputCallRequest{
			ResponseParameters: []*testgrpc.ResponseParameters{{Size: 3}, {Size: 1, IntervalUs: 30e6}},
		})
		if err != nil {
			t.Fatal(err)
		}
		frame := append([]byte{0, 0, 0, 0, byte(len(msg))}, msg...)
		req, _ := http.NewRequest("POST", "http://proxy/grpc.testing.TestService/StreamingOutputCall", bytes.NewReader(frame))
		req.Host = fmt.Sprintf("api.allowed.test:%d", u.port)
		req.Header = http.Header{"Content-Type": {"application/grpc"}, "Te": {"trailers"}, "Grpc-Timeout": {"200m"}}
		hc, _ := h2cClient(t, e)
		res, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil || len(body) != 12 || res.Trailer.Get("Grpc-Status") != "4" {
			t.Fatalf("got %d body bytes (%v), trailers %v; want one message, then grpc-status 4", len(body), err, res.Trailer)
		}
		u.next(t)
	})
	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		stream, err := client.FullDuplexCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 5}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatal(err)
		}
		cancel()
		if _, err := stream.Recv(); status.Code(err) != codes.Canceled {
			t.Fatalf("after cancel: %v, want Canceled", err)
		}
		if c := u.next(t); c.err == nil {
			t.Fatal("upstream call ended cleanly, want it cancelled")
		}
	})
}

func TestGRPCDeniedAndUpstreamStatus(t *testing.T) {
	e, u := grpcEnv(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	denied := grpcClient(t, e, fmt.Sprintf("denied.test:%d", u.port))
	_, err := denied.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), "denied.test") {
		t.Fatalf("denied unary: %v, want PermissionDenied naming denied.test", err)
	}
	stream, err := denied.FullDuplexCall(ctx)
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("denied bidi: %v, want PermissionDenied", err)
	}
	u.none(t)
	if n := e.counter("egressd_requests_total", "decision", "deny", "protocol", "grpc"); n != 2 {
		t.Errorf("denied grpc requests counted %v, want 2", n)
	}

	// A status the upstream answers (trailers-only) crosses intact.
	allowed := grpcClient(t, e, fmt.Sprintf("api.allowed.test:%d", u.port))
	_, err = allowed.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.NotFound), Message: "no such thing ✓"}})
	if s := status.Convert(err); s.Code() != codes.NotFound || s.Message() != "no such thing ✓" {
		t.Fatalf("upstream status: %v, want NotFound with its message", err)
	}
	u.next(t)

	// The access log says what the clients got: HTTP 200 and the grpc-status
	// (7 PERMISSION_DENIED from egressd, 5 NOT_FOUND from the upstream).
	logs := e.logs.String()
	if n := strings.Count(logs, `"decision":"deny","status":200,"grpc_status":"7",`); n != 2 {
		t.Errorf("%d denied calls logged with status 200 and grpc_status 7, want 2:\n%s", n, logs)
	}
	mustContain(t, logs, `"decision":"allow","status":200,"grpc_status":"5",`)
}

// On an HTTPS port the app speaks h2c and egressd originates TLS with ALPN h2.
func TestGRPCOriginatesTLS(t *testing.T) {
	e, u := grpcEnv(t, true)
	client := grpcClient(t, e, fmt.Sprintf("api.allowed.test:%d", u.port))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 3 {
		if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 10}); err != nil {
			t.Fatal(err)
		}
		if c := u.next(t); !c.tls || c.err != nil {
			t.Fatalf("upstream saw %+v, want a TLS call", c)
		}
	}
	mustContain(t, e.logs.String(), `"protocol":"grpc","upstream":"https","rule":"grpc-api","decision":"allow","status":200`)
}

// Shutdown lets a gRPC stream in flight finish (its connection gets GOAWAY)
// and then returns; the client opens no new stream on that connection.
func TestGRPCShutdownFinishesStreams(t *testing.T) {
	e, u := grpcEnv(t, false)
	client := grpcClient(t, e, fmt.Sprintf("api.allowed.test:%d", u.port))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := client.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ping := func() error {
		if err := stream.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 3}}}); err != nil {
			return err
		}
		_, err := stream.Recv()
		return err
	}
	if err := ping(); err != nil {
		t.Fatal(err)
	}
	shut := make(chan error, 1)
	go func() { shut <- e.p.Shutdown(ctx) }()
	waitFor(t, e.p.closing.Load) // Shutdown is under way
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a stream in flight", err)
	default:
	}
	if err := ping(); err != nil {
		t.Fatalf("stream in flight after Shutdown began: %v", err)
	}
	stream.CloseSend()
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("end of stream: %v", err)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	u.next(t)
}
