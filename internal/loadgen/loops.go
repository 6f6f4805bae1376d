package loadgen

import (
	"context"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// openLoop dispatches requests at their due times to idle workers, adding a
// worker whenever none is idle (up to MaxConns).
func (r *runner) openLoop(ctx context.Context) (*Result, error) {
	cfg := &r.cfg
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	if interval <= 0 {
		interval = 1
	}
	total := int64(cfg.Duration / interval)
	jobs := make(chan time.Time) // unbuffered: a send succeeds only if a worker is idle
	var wg sync.WaitGroup
	spawn := func(w *worker) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.close()
			for due := range jobs {
				w.do(due)
			}
		}()
	}
	// Connect the first workers before the clock starts, so the first
	// requests do not pay for the dial (a long-running client would not).
	for i := 0; i < cfg.Conns; i++ {
		w := r.newWorker()
		if kind := w.dial(); kind != "" {
			w.errs[kind]++
			r.errs.Add(1)
		}
		spawn(w)
	}
	nworkers := cfg.Conns

	start := time.Now()
	stop := make(chan struct{})
	go r.progress(start, stop)
	lag := newHistogram()
	dispatched := make(chan struct{})
	go func() {
		defer close(dispatched)
		// Go's timers may fire up to a millisecond late on an idle process
		// (the poller's timeout is in milliseconds), which would add to
		// every latency measured from the due time. This goroutine sleeps
		// on its own thread with clock_nanosleep instead.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		for i := int64(0); i < total && ctx.Err() == nil; i++ {
			due := start.Add(time.Duration(i) * interval)
			sleepUntil(due)
			r.scheduled.Add(1)
			select {
			case jobs <- due:
			default:
				if nworkers < cfg.MaxConns {
					nworkers++
					spawn(r.newWorker())
				}
				select {
				case jobs <- due:
				case <-ctx.Done():
					return
				}
			}
			_ = lag.RecordValue(max(time.Since(due).Microseconds(), 1))
			runtime.Gosched() // let the worker send now, not when this thread sleeps
		}
	}()
	<-dispatched
	close(jobs)
	wg.Wait() // each request is bounded by Timeout
	close(stop)
	res := r.result("open", time.Since(start))
	res.DispatchLag = &Lag{P50: lag.ValueAtQuantile(50), P99: lag.ValueAtQuantile(99), Max: lag.Max()}
	return res, ctx.Err()
}

// sleepUntil blocks the calling thread until t (CLOCK_MONOTONIC, like
// time.Now's monotonic reading).
func sleepUntil(t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	ts := unix.NsecToTimespec(d.Nanoseconds())
	for unix.ClockNanosleep(unix.CLOCK_MONOTONIC, 0, &ts, &ts) == unix.EINTR {
	}
}

// closedLoop runs Conns workers back to back until Duration has passed.
func (r *runner) closedLoop(ctx context.Context) (*Result, error) {
	cfg := &r.cfg
	start := time.Now()
	end := start.Add(cfg.Duration)
	stop := make(chan struct{})
	go r.progress(start, stop)
	var wg sync.WaitGroup
	for i := 0; i < cfg.Conns; i++ {
		w := r.newWorker()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.close()
			for ctx.Err() == nil {
				t := time.Now()
				if t.After(end) {
					return
				}
				w.do(t)
			}
		}()
	}
	wg.Wait()
	close(stop)
	return r.result("closed", time.Since(start)), ctx.Err()
}

// SleepUntil blocks the calling thread until t with clock_nanosleep, for
// other open-loop generators (egressbench's gRPC one): call it from a
// goroutine locked to its thread (runtime.LockOSThread). Go's timers may
// fire up to a millisecond late on an idle process.
func SleepUntil(t time.Time) { sleepUntil(t) }
