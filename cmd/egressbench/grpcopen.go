package main

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/egressd/egressd/cmd/egressbench/internal/scenario"
	"github.com/egressd/egressd/internal/loadgen"
)

// grpcOpenLoop makes unary health checks at spec.Rate per second on the
// connections conns (round robin), open loop: the schedule is fixed in
// advance and each call's latency counts from its due time, so a stall
// shows in every call it delayed (no coordinated omission). A call goes to
// an idle caller goroutine; one is added whenever none is idle, up to
// spec.MaxConns callers (HTTP/2 multiplexes them on the connections).
func grpcOpenLoop(ctx context.Context, spec workerSpec, conns []*grpc.ClientConn) *loadgen.Result {
	interval := time.Duration(float64(time.Second) / spec.Rate)
	if interval <= 0 {
		interval = 1
	}
	total := int64(spec.Duration / interval)
	var mu sync.Mutex
	hist := hdrhistogram.New(1, 60_000_000, 3)
	errs := map[string]int64{}
	var ok, failed int64
	jobs := make(chan time.Time) // unbuffered: a send succeeds only if a caller is idle
	var wg sync.WaitGroup
	callers := 0
	spawn := func() {
		client := healthpb.NewHealthClient(conns[callers%len(conns)])
		callers++
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := &healthpb.HealthCheckRequest{}
			for due := range jobs {
				cctx, cancel := context.WithTimeout(ctx, spec.Timeout)
				resp, err := client.Check(cctx, req)
				cancel()
				lat := time.Since(due).Microseconds()
				mu.Lock()
				if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
					failed++
					errs[fmt.Sprint(status(err))]++
				} else {
					_ = hist.RecordValue(max(lat, 1))
					ok++
				}
				mu.Unlock()
			}
		}()
	}
	for range len(conns) * scenario.GRPCStreams {
		spawn()
	}
	lag := hdrhistogram.New(1, 60_000_000, 3)
	start := time.Now()
	func() {
		runtime.LockOSThread() // loadgen.SleepUntil sleeps this thread
		defer runtime.UnlockOSThread()
		for i := int64(0); i < total && ctx.Err() == nil; i++ {
			due := start.Add(time.Duration(i) * interval)
			loadgen.SleepUntil(due)
			select {
			case jobs <- due:
			default:
				if callers < spec.MaxConns {
					spawn()
				}
				select {
				case jobs <- due:
				case <-ctx.Done():
				}
			}
			_ = lag.RecordValue(max(time.Since(due).Microseconds(), 1))
			runtime.Gosched() // let the caller send now
		}
	}()
	close(jobs)
	wg.Wait() // each call is bounded by Timeout
	secs := time.Since(start).Seconds()
	res := &loadgen.Result{Mode: "open", Rate: spec.Rate, Conns: len(conns), Seconds: secs, Responses: ok,
		Status: map[string]int64{"2xx": ok}, Errors: errs, ErrorCount: failed, AchievedRate: float64(ok) / secs}
	res.Latency = grpcLatency(hist)
	res.DispatchLag = &loadgen.Lag{P50: lag.ValueAtQuantile(50), P99: lag.ValueAtQuantile(99), Max: lag.Max()}
	return res
}

// grpcLatency summarises a histogram of call latencies (µs), with the
// curve the plots need.
func grpcLatency(h *hdrhistogram.Histogram) loadgen.Latency {
	l := loadgen.Latency{P50: h.ValueAtQuantile(50), P90: h.ValueAtQuantile(90),
		P99: h.ValueAtQuantile(99), P999: h.ValueAtQuantile(99.9), Max: h.Max(), Mean: int64(h.Mean())}
	for _, q := range loadgen.CurveQuantiles {
		l.Curve = append(l.Curve, h.ValueAtQuantile(q))
	}
	return l
}
