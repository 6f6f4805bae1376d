package e2e

import (
	"context"
	"io"
	"net"
	"testing"

	"google.golang.org/grpc"
	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// grpcService is the gRPC interop TestService, as much of it as the tests
// call: UnaryCall echoes the payload size, FullDuplexCall answers every
// message.
type grpcService struct {
	testpb.UnimplementedTestServiceServer
}

func (s *grpcService) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return &testpb.SimpleResponse{Payload: &testpb.Payload{Body: make([]byte, req.GetResponseSize())}}, nil
}

func (s *grpcService) FullDuplexCall(stream testpb.TestService_FullDuplexCallServer) error {
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		size := int32(0)
		if ps := req.GetResponseParameters(); len(ps) > 0 {
			size = ps[0].GetSize()
		}
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: make([]byte, size)}}); err != nil {
			return err
		}
	}
}

func serveGRPC(t *testing.T, ln net.Listener) {
	srv := grpc.NewServer()
	testpb.RegisterTestServiceServer(srv, &grpcService{})
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
}
