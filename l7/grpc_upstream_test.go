package l7

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/egressd/egressd/rules"
)

// grpcService is the upstream gRPC TestService: it echoes the
// x-grpc-test-echo-* metadata back as header and trailer, answers payloads
// of the requested sizes and waits (cancellably) for the requested intervals.
type grpcService struct {
	testgrpc.UnimplementedTestServiceServer
}

func echoMetadata(ctx context.Context) {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("x-grpc-test-echo-initial"); len(v) > 0 {
		grpc.SetHeader(ctx, metadata.Pairs("x-grpc-test-echo-initial", v[0]))
	}
	if v := md.Get("x-grpc-test-echo-trailing-bin"); len(v) > 0 {
		grpc.SetTrailer(ctx, metadata.Pairs("x-grpc-test-echo-trailing-bin", v[0]))
	}
}

func payload(n int32) *testgrpc.Payload { return &testgrpc.Payload{Body: make([]byte, n)} }

func (grpcService) UnaryCall(ctx context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	echoMetadata(ctx)
	if s := req.GetResponseStatus(); s != nil {
		return nil, status.Error(codes.Code(s.Code), s.Message)
	}
	return &testgrpc.SimpleResponse{Payload: payload(req.GetResponseSize()), Username: fmt.Sprint(len(req.GetPayload().GetBody()))}, nil
}

func (grpcService) StreamingOutputCall(req *testgrpc.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testgrpc.StreamingOutputCallResponse]) error {
	echoMetadata(stream.Context())
	return sendResponses(stream, req.GetResponseParameters())
}

func sendResponses(stream grpc.ServerStreamingServer[testgrpc.StreamingOutputCallResponse], params []*testgrpc.ResponseParameters) error {
	for _, p := range params {
		select {
		case <-time.After(time.Duration(p.GetIntervalUs()) * time.Microsecond):
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: payload(p.GetSize())}); err != nil {
			return err
		}
	}
	return nil
}

func (grpcService) StreamingInputCall(stream grpc.ClientStreamingServer[testgrpc.StreamingInputCallRequest, testgrpc.StreamingInputCallResponse]) error {
	var sum int32
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(&testgrpc.StreamingInputCallResponse{AggregatedPayloadSize: sum})
		}
		if err != nil {
			return err
		}
		sum += int32(len(req.GetPayload().GetBody()))
	}
}

func (grpcService) FullDuplexCall(stream grpc.BidiStreamingServer[testgrpc.StreamingOutputCallRequest, testgrpc.StreamingOutputCallResponse]) error {
	echoMetadata(stream.Context())
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := sendResponses(stream, req.GetResponseParameters()); err != nil {
			return err
		}
	}
}

// grpcCall is what the upstream saw of one call.
type grpcCall struct {
	method    string
	authority string
	md        metadata.MD
	tls       bool
	err       error // the handler's result: how the call ended upstream
}

// grpcUpstream is a real gRPC server (TLS when cert is given) running
// grpcService and recording every call.
type grpcUpstream struct {
	port  uint16
	calls chan grpcCall
}

func newGRPCUpstream(t testing.TB, cert *tls.Certificate) *grpcUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &grpcUpstream{port: uint16(ln.Addr().(*net.TCPAddr).Port), calls: make(chan grpcCall, 100)}
	record := func(ctx context.Context, method string, err error) {
		md, _ := metadata.FromIncomingContext(ctx)
		c := grpcCall{method: method, md: md, err: err}
		if v := md.Get(":authority"); len(v) > 0 {
			c.authority = v[0]
		}
		if p, ok := peer.FromContext(ctx); ok {
			_, c.tls = p.AuthInfo.(credentials.TLSInfo)
		}
		u.calls <- c
	}
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(8 << 20), grpc.MaxSendMsgSize(8 << 20),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			res, err := h(ctx, req)
			record(ctx, info.FullMethod, err)
			return res, err
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			err := h(srv, ss)
			record(ss.Context(), info.FullMethod, err)
			return err
		}),
	}
	if cert != nil {
		opts = append(opts, grpc.Creds(credentials.NewServerTLSFromCert(cert)))
	}
	s := grpc.NewServer(opts...)
	testgrpc.RegisterTestServiceServer(s, grpcService{})
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return u
}

func (u *grpcUpstream) next(t testing.TB) grpcCall {
	t.Helper()
	select {
	case c := <-u.calls:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("upstream saw no gRPC call")
		return grpcCall{}
	}
}

func (u *grpcUpstream) none(t testing.TB) {
	t.Helper()
	select {
	case c := <-u.calls:
		t.Fatalf("upstream saw %s (authority %s), want nothing", c.method, c.authority)
	case <-time.After(50 * time.Millisecond):
	}
}

// grpcEnv starts a gRPC upstream and a proxy allowing api.allowed.test on
// its port as GRPC (HTTPS, with TLS origination, when tlsUp).
func grpcEnv(t *testing.T, tlsUp bool) (*env, *grpcUpstream) {
	t.Helper()
	var (
		cert  *tls.Certificate
		cfg   Config
		proto = rules.GRPC
	)
	if tlsUp {
		ca := newTestCA(t)
		c := ca.leaf(t, "api.allowed.test")
		cert, cfg.RootCAs, proto = &c, ca.pool, rules.HTTPS
	}
	u := newGRPCUpstream(t, cert)
	cfg.Rules = compileRules(t, protoRule("grpc-api", "api.allowed.test", u.port, proto))
	cfg.OriginalDst = fixedOrig{netip4Loopback(u.port)}
	return newEnv(t, cfg), u
}

// grpcClient dials authority through the proxy, as an app whose connection
// the BPF hook redirected would.
func grpcClient(t testing.TB, e *env, authority string) testgrpc.TestServiceClient {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+authority,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", e.addr)
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(8<<20), grpc.MaxCallSendMsgSize(8<<20)),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return testgrpc.NewTestServiceClient(cc)
}

func netip4Loopback(port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
}
