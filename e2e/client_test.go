package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/egressd/egressd/internal/kerneltest"
)

// helperEnv makes the test binary act as a client program (see TestMain).
const helperEnv = "EGRESSD_E2E_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "grpc":
		os.Exit(grpcClientMain(os.Args[1:]))
	case "loop":
		os.Exit(loopClientMain(os.Args[1:])) // handover_test.go
	case "flood":
		os.Exit(floodMain(os.Args[1:])) // floodclient_test.go
	case "exemptloop":
		os.Exit(exemptLoopMain(os.Args[1:])) // exempt_test.go
	case "probe":
		os.Exit(probeMain(os.Args[1:]))
	}
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// response is what curl got: the status code (0: no HTTP response) and body.
type response struct {
	code int
	body string
	err  string // curl's stderr when it failed
}

// curl runs curl in the test cgroup, in ns (nil: the host namespace), with
// args, and returns the response. It never fails the test itself.
func curl(t *testing.T, w *world, ns *kerneltest.NS, args ...string) response {
	t.Helper()
	args = append([]string{"-sS", "--max-time", kerneltest.Seconds(10 * time.Second), "-o", "-", "-w", "\n%{http_code}"}, args...)
	cmd := kerneltest.Command(t, w.cgroup, ns, "curl", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	_ = cmd.Run()
	out := stdout.String()
	i := strings.LastIndexByte(out, '\n')
	code, _ := strconv.Atoi(strings.TrimSpace(out[i+1:]))
	return response{code: code, body: out[:max(i, 0)], err: stderr.String()}
}

// curlAsync runs curl in the host namespace in a goroutine and returns
// its response on the channel. The test waits for the goroutine on every
// path (t.Cleanup, before the world is torn down), so it never touches t
// after the test has ended.
func curlAsync(t *testing.T, w *world, args ...string) <-chan response {
	t.Helper()
	ch := make(chan response, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		ch <- curl(t, w, nil, args...)
	}()
	t.Cleanup(func() { <-done })
	return ch
}

// field returns the value of "key: value" in an echo body.
func (r response) field(key string) string {
	for _, line := range strings.Split(r.body, "\n") {
		if v, ok := strings.CutPrefix(line, key+": "); ok {
			return v
		}
	}
	return ""
}

// grpcCall runs the gRPC client helper in the test cgroup and ns: a unary
// call and a bidi stream to target with the :authority given. It returns
// the helper's report: "OK" or the status code name.
func grpcCall(t *testing.T, w *world, ns *kerneltest.NS, target, authority string) string {
	t.Helper()
	cmd := kerneltest.Command(t, w.cgroup, ns, os.Args[0], target, authority)
	cmd.Env = append(os.Environ(), helperEnv+"=grpc")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("grpc client: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// grpcClientMain is the gRPC client program: args target, authority.
func grpcClientMain(args []string) int {
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: TARGET AUTHORITY")
		return 2
	}
	conn, err := grpc.NewClient("passthrough:///"+args[0], grpc.WithAuthority(args[1]),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Println(err)
		return 1
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), kerneltest.Scale(10*time.Second))
	defer cancel()
	c := testpb.NewTestServiceClient(conn)
	resp, err := c.UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: 100 << 10, Payload: &testpb.Payload{Body: make([]byte, 100<<10)}})
	if err != nil {
		fmt.Println(status.Code(err))
		return 0
	}
	if n := len(resp.GetPayload().GetBody()); n != 100<<10 {
		fmt.Printf("unary: got %d bytes\n", n)
		return 0
	}
	if err := bidi(ctx, c); err != nil {
		fmt.Printf("bidi: %v\n", err)
		return 0
	}
	fmt.Println("OK")
	return 0
}

// bidi sends three messages on a FullDuplexCall, reading each answer
// before sending the next.
func bidi(ctx context.Context, c testpb.TestServiceClient) error {
	stream, err := c.FullDuplexCall(ctx)
	if err != nil {
		return err
	}
	for i := range 3 {
		size := int32(1000 * (i + 1))
		if err := stream.Send(&testpb.StreamingOutputCallRequest{
			ResponseParameters: []*testpb.ResponseParameters{{Size: size}}}); err != nil {
			return err
		}
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		if len(resp.GetPayload().GetBody()) != int(size) {
			return fmt.Errorf("message %d: %d bytes, want %d", i, len(resp.GetPayload().GetBody()), size)
		}
	}
	if err := stream.CloseSend(); err != nil {
		return err
	}
	if _, err := stream.Recv(); err != io.EOF {
		return fmt.Errorf("end of stream: %v", err)
	}
	return nil
}
