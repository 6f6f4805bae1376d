package loadgen

import (
	"context"
	"sync"
	"time"
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
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
dispatch:
	for i := int64(0); i < total; i++ {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-ctx.Done():
				break dispatch
			}
		}
		r.scheduled.Add(1)
		select {
		case jobs <- due:
			continue
		default:
		}
		if nworkers < cfg.MaxConns {
			nworkers++
			spawn(r.newWorker())
		}
		select {
		case jobs <- due:
		case <-ctx.Done():
			break dispatch
		}
	}
	close(jobs)
	wg.Wait() // each request is bounded by Timeout
	close(stop)
	return r.result("open", time.Since(start)), ctx.Err()
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
