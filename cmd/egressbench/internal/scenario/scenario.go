// Package scenario names egressbench's load shapes (--tests): scenario.go
// parses a test name (rtt, max-ka, latRATE, grpcRATE, bulk-up-chunked, ...)
// into what the load generators do — connections, open-loop rate, a new
// connection per request, h2load, gRPC, held connections, bulk bodies —
// for the matrix that runs them and the report that describes them.
package scenario

import (
	"fmt"
	"strconv"
	"strings"
)

// GRPCStreams is the number of concurrent calls per gRPC connection (as
// h2load's 10 streams per client).
const GRPCStreams = 10

// Test is one load shape, named on the command line (--tests).
type Test struct {
	Name    string
	Rate    float64 // open loop when > 0
	Conns   int
	NewConn bool
	H2C     bool   // h2load instead of the HTTP/1.1 generator
	Hold    bool   // conns1000: hold connections open and read the proxy's RSS
	GRPC    bool   // gRPC unary calls (grpc-go, the health service)
	Bulk    string // "down" or "up": one --bulk-size body with curl
	Chunked bool   // bulk: chunked instead of Content-Length
}

// Parse reads a test name: rtt, max-ka, max-close, h2c, conns1000, grpc,
// grpcRATE, latRATE, bulk-down, bulk-up, bulk-down-chunked, bulk-up-chunked.
func Parse(name string) (Test, error) {
	switch name {
	case "rtt":
		return Test{Name: name, Conns: 1}, nil
	case "max-ka":
		return Test{Name: name, Conns: 32}, nil
	case "max-close":
		return Test{Name: name, Conns: 32, NewConn: true}, nil
	case "h2c":
		return Test{Name: name, Conns: 8, H2C: true}, nil
	case "conns1000":
		return Test{Name: name, Conns: 1000, Hold: true}, nil
	case "grpc":
		return Test{Name: name, Conns: 8, GRPC: true}, nil
	case "bulk-down", "bulk-up", "bulk-down-chunked", "bulk-up-chunked":
		dir, chunked := strings.CutSuffix(strings.TrimPrefix(name, "bulk-"), "-chunked")
		return Test{Name: name, Conns: 1, Bulk: dir, Chunked: chunked}, nil
	}
	if r, ok := strings.CutPrefix(name, "grpc"); ok { // grpcRATE: open loop
		if rate, err := strconv.ParseFloat(r, 64); err == nil && rate > 0 {
			return Test{Name: name, Rate: rate, Conns: 8, GRPC: true}, nil
		}
	}
	if r, ok := strings.CutPrefix(name, "lat"); ok {
		if rate, err := strconv.ParseFloat(r, 64); err == nil && rate > 0 {
			return Test{Name: name, Rate: rate, Conns: 8}, nil
		}
	}
	return Test{}, fmt.Errorf("unknown test %q", name)
}
