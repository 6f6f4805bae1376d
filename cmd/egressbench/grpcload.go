package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	grpcStatus "google.golang.org/grpc/status"

	"github.com/egressd/egressd/cmd/egressbench/internal/scenario"
	"github.com/egressd/egressd/internal/loadgen"
)

// grpcLoad makes unary calls (grpc.health.v1.Health/Check, :authority the
// load host) on spec.Conns connections with scenario.GRPCStreams calls in flight on
// each, back to back for spec.Duration: a real gRPC client (grpc-go) in a
// closed loop; at spec.Rate calls per second in an open loop when it is set
// (grpcOpenLoop).
func grpcLoad(ctx context.Context, spec workerSpec) (*loadgen.Result, error) {
	var conns []*grpc.ClientConn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < spec.Conns; i++ {
		c, err := grpc.NewClient("passthrough:///"+spec.Target,
			grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority(spec.Host))
		if err != nil {
			return nil, err
		}
		conns = append(conns, c)
		// One call first: the connection is up before the clock starts.
		cctx, cancel := context.WithTimeout(ctx, spec.Timeout)
		_, err = healthpb.NewHealthClient(c).Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("grpc warm-up call to %s: %w", spec.Target, err)
		}
	}
	if spec.Rate > 0 {
		return grpcOpenLoop(ctx, spec, conns), nil
	}
	var mu sync.Mutex
	hist := hdrhistogram.New(1, 60_000_000, 3)
	errs := map[string]int64{}
	var ok, failed int64
	start := time.Now()
	stop := start.Add(spec.Duration)
	var wg sync.WaitGroup
	for _, c := range conns {
		client := healthpb.NewHealthClient(c)
		for range scenario.GRPCStreams {
			wg.Add(1)
			go func() {
				defer wg.Done()
				h := hdrhistogram.New(1, 60_000_000, 3)
				var n, bad int64
				kinds := map[string]int64{}
				req := &healthpb.HealthCheckRequest{}
				for time.Now().Before(stop) && ctx.Err() == nil {
					t0 := time.Now()
					cctx, cancel := context.WithTimeout(ctx, spec.Timeout)
					resp, err := client.Check(cctx, req)
					cancel()
					if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
						bad++
						kinds[fmt.Sprint(status(err))]++
						continue
					}
					h.RecordValue(time.Since(t0).Microseconds())
					n++
				}
				mu.Lock()
				hist.Merge(h)
				ok += n
				failed += bad
				for k, v := range kinds {
					errs[k] += v
				}
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	res := &loadgen.Result{Mode: "closed", Conns: spec.Conns, Seconds: secs, Responses: ok,
		Status: map[string]int64{"2xx": ok}, Errors: errs, ErrorCount: failed, AchievedRate: float64(ok) / secs}
	res.Latency = grpcLatency(hist)
	return res, nil
}

// status is the gRPC code of err ("OK" for a nil error with a wrong answer).
func status(err error) string {
	if err == nil {
		return "wrong answer"
	}
	if s, ok := grpcStatus.FromError(err); ok {
		return s.Code().String()
	}
	return "error"
}
