// Package loadgen sends HTTP/1.1 GET requests to one target, either on a
// schedule fixed in advance (open loop) or back to back (closed loop), and
// records every request's latency in an HDR histogram.
//
// Open loop: request i is due at start + i/Rate, decided before the run
// starts. Its latency is measured from that due time, not from when a
// connection happened to be free, so a stall of the system under test shows
// up in the latency of every request it delayed (no coordinated omission).
// Each worker owns one connection; when every worker is busy at a due time a
// new worker is added, up to MaxConns. Past that ceiling requests queue in the
// dispatcher, and the queueing counts as latency.
//
// The dispatcher sleeps with clock_nanosleep on a thread of its own: Go's
// timers can fire up to a millisecond late in an idle process, which would
// add to every latency. What lateness remains (waking up, handing the request
// to a worker, or waiting for a free worker) is reported as Result.DispatchLag.
//
// Closed loop (Rate 0): Conns workers send back to back for Duration. Its
// latencies suffer coordinated omission; use it for throughput.
//
// The client is a minimal HTTP/1.1 implementation (one pre-built request, a
// status line and header parser, Content-Length or chunked bodies) so that
// the generator's own CPU cost stays well below that of the systems it
// measures.
//
// Lifecycle traps: Run is bounded — it returns after Duration plus at most
// Timeout (the last requests in flight); a request that gets no answer within
// Timeout is an error of kind "timeout" and is not in the histogram, so read
// Result.Errors next to the percentiles. Config.Progress is called from a
// goroutine of its own. The open loop's dispatcher holds an OS thread for
// the whole run.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Config describes one load run.
type Config struct {
	Target string // host:port to connect to (required)
	Host   string // Host header; "" uses Target
	Path   string // request path; "" is "/"

	// Rate is the open-loop request rate per second; 0 selects closed loop.
	Rate float64
	// Conns is the number of connections for closed loop, and the number of
	// workers connected before an open-loop run starts. 0: 32 closed, 8 open.
	Conns int
	// MaxConns caps the open-loop workers. 0: 512.
	MaxConns int
	// Duration of the run (required).
	Duration time.Duration
	// Timeout bounds each request, from its send to its last byte. 0: 5s.
	Timeout time.Duration
	// NewConnPerRequest sends "Connection: close" and dials anew for every
	// request (the "close" tests); otherwise connections are kept alive.
	NewConnPerRequest bool

	// Dial opens connections. nil: a net.Dialer with Timeout.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Progress, if not nil, is called about four times a second from a
	// goroutine of its own while the run lasts.
	Progress func(Snapshot)
}

// Snapshot is the state of a run in progress.
type Snapshot struct {
	Elapsed   time.Duration
	Done      int64 // requests answered (any status)
	Errors    int64
	Conns     int64 // connections dialled so far
	Scheduled int64 // open loop: requests whose due time has come
}

// Run performs the load described by cfg.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Target == "" || cfg.Duration <= 0 {
		return nil, errors.New("loadgen: target and duration are required")
	}
	r := newRunner(cfg)
	if r.cfg.Rate > 0 {
		return r.openLoop(ctx)
	}
	return r.closedLoop(ctx)
}

// runner holds the state shared by the workers of one run.
type runner struct {
	cfg       Config
	req       []byte
	done      atomic.Int64
	errs      atomic.Int64
	dials     atomic.Int64
	scheduled atomic.Int64

	mu      sync.Mutex
	workers []*worker
}

func newRunner(cfg Config) *runner {
	if cfg.Host == "" {
		cfg.Host = cfg.Target
	}
	if cfg.Path == "" {
		cfg.Path = "/"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 512
	}
	if cfg.Conns <= 0 {
		cfg.Conns = 32
		if cfg.Rate > 0 {
			cfg.Conns = 8
		}
	}
	if cfg.Rate > 0 && cfg.Conns > cfg.MaxConns {
		cfg.Conns = cfg.MaxConns
	}
	if cfg.Dial == nil {
		d := &net.Dialer{Timeout: cfg.Timeout}
		cfg.Dial = d.DialContext
	}
	connHdr := ""
	if cfg.NewConnPerRequest {
		connHdr = "Connection: close\r\n"
	}
	req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: egressbench\r\n%s\r\n", cfg.Path, cfg.Host, connHdr)
	return &runner{cfg: cfg, req: []byte(req)}
}

// newWorker registers a worker with a histogram of its own (merged at the end,
// so recording takes no lock).
func (r *runner) newWorker() *worker {
	w := &worker{r: r, hist: newHistogram(), errs: map[string]int64{}, status: map[int]int64{}}
	r.mu.Lock()
	r.workers = append(r.workers, w)
	r.mu.Unlock()
	return w
}

// progress calls cfg.Progress until stop is closed.
func (r *runner) progress(start time.Time, stop <-chan struct{}) {
	if r.cfg.Progress == nil {
		return
	}
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			r.cfg.Progress(Snapshot{
				Elapsed: time.Since(start), Done: r.done.Load(), Errors: r.errs.Load(),
				Conns: r.dials.Load(), Scheduled: r.scheduled.Load(),
			})
		}
	}
}

// newHistogram records microseconds from 1 µs to 60 s with 3 significant digits.
func newHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, 60_000_000, 3)
}
