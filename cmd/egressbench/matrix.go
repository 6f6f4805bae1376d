package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/egressd/egressd/cmd/egressbench/internal/report"
	"github.com/egressd/egressd/cmd/egressbench/internal/scenario"
)

// applies reports whether a test makes sense for a case.
func applies(t *target, ts scenario.Test) bool {
	switch {
	case ts.H2C:
		return t.h2 != ""
	case ts.GRPC:
		return t.grpc != ""
	case ts.Bulk != "":
		return t.tests == nil || t.tests[ts.Name]
	case ts.Hold:
		return t.proxy != nil && t.tests == nil
	case t.tests == nil:
		return true
	}
	return ts.Rate > 0 || t.tests[ts.Name]
}

// runMatrix runs repetition → test → case, rotating the case order every
// repetition, so that slow drifts of a shared machine spread over all cases.
func (e *env) runMatrix(ctx context.Context) (*report.Report, error) {
	rep := &report.Report{Machine: e.machine, Skipped: e.skipped, Options: e.optionsJSON()}
	for _, t := range e.targets {
		rep.Cases = append(rep.Cases, t.name)
	}
	total := 0
	var tests []scenario.Test
	for _, name := range e.o.tests {
		ts, _ := scenario.Parse(name)
		tests = append(tests, ts)
		for _, t := range e.targets {
			if applies(t, ts) {
				total++
			}
		}
		rep.Tests = append(rep.Tests, name)
	}
	total *= e.o.reps
	n := 0
	for r := 0; r < e.o.reps; r++ {
		for _, ts := range tests {
			for i := range e.targets {
				t := e.targets[(i+r)%len(e.targets)]
				if !applies(t, ts) {
					continue
				}
				if t.proxy != nil {
					if gone, _ := t.proxy.exited(); gone {
						continue // reported by the run that saw it go
					}
				}
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				n++
				fmt.Fprintf(e.stderr, "%s[%d/%d] rep %d %s %s\n", clearLine(e.stderr), n, total, r+1, ts.Name, t.name)
				rec := e.runOne(ctx, ts, t, r)
				if rec.Error != "" {
					fmt.Fprintf(e.stderr, "  error: %s\n", rec.Error)
				}
				rep.Runs = append(rep.Runs, rec)
			}
		}
	}
	return rep, nil
}

// runOne waits for the machine to calm down, then runs the load while
// measuring the proxy's CPU time and peak memory and the machine's load.
func (e *env) runOne(ctx context.Context, ts scenario.Test, t *target, r int) report.Record {
	rec := report.Record{Test: ts.Name, Case: t.name, Rep: r + 1}
	rec.BusyBefore = waitIdle(ctx, e.o.idleWait)
	pid := 0
	if t.proxy != nil {
		pid = t.proxy.pid()
	}
	var cpu0 time.Duration
	if pid != 0 {
		cpu0 = treeCPU(pid)
	}
	up0 := treeCPU(e.upstream.pid())
	var genCPU time.Duration
	stopRSS := sampleRSS(pid, &rec.PeakRSSKiB)
	b0, j0 := cpuTimes()
	var err error
	switch {
	case ts.H2C:
		rec.Result, rec.Meta, err = runH2load(ctx, t, ts, e.o.duration)
	case ts.Bulk != "":
		rec.Result, rec.Meta, err = e.runBulk(ctx, t, ts)
	case ts.GRPC:
		spec := workerSpec{Label: ts.Name + " " + t.name, Target: t.grpc, Host: loadHost, Conns: ts.Conns,
			Rate: ts.Rate, MaxConns: 512, Duration: e.o.duration, Timeout: 5 * time.Second, GRPC: true}
		rec.Result, genCPU, err = runWorker(ctx, spec, t.cgroup)
	default:
		rec.Result, genCPU, err = runWorker(ctx, e.spec(ts, t), t.cgroup)
	}
	upCPU := treeCPU(e.upstream.pid()) - up0
	b1, j1 := cpuTimes()
	stopRSS()
	if j1 > j0 {
		rec.Busy = float64(b1-b0) / float64(j1-j0)
	}
	if rec.Result != nil && rec.Result.Responses > 0 {
		n := float64(rec.Result.Responses)
		if pid != 0 {
			rec.ProxyCPUus = float64((treeCPU(pid) - cpu0).Microseconds())
			rec.CPUPerReqUS = rec.ProxyCPUus / n
		}
		rec.GenCPUPerReqUS = float64(genCPU.Microseconds()) / n // 0 for h2load
		rec.UpstreamCPUPerReqUS = float64(upCPU.Microseconds()) / n
	}
	if err != nil {
		rec.Error = err.Error()
	}
	if t.proxy != nil {
		if gone, how := t.proxy.exited(); gone {
			rec.Error = strings.TrimPrefix(rec.Error+"; ", "; ") + fmt.Sprintf("%s exited (%v); logs kept in %s", t.name, how, e.dir)
			e.failed = true
		}
	}
	if rec.Error != "" && ctx.Err() == nil { // not for an interrupted run
		e.failed = true
	}
	return rec
}

// spec is the worker spec of one HTTP/1.1 run.
func (e *env) spec(ts scenario.Test, t *target) workerSpec {
	s := workerSpec{
		Label: ts.Name + " " + t.name, Target: t.addr, Host: loadHost, Rate: ts.Rate,
		Conns: ts.Conns, MaxConns: 512, Duration: e.o.duration, Timeout: 5 * time.Second,
		NewConn: ts.NewConn, Hold: ts.Hold,
	}
	if ts.Hold { // long enough for several RSS samples
		s.Duration = time.Second
	}
	return s
}

// sampleRSS records the peak RSS of pid every 100 ms until the returned stop
// function is called.
func sampleRSS(pid int, peak *int64) (stop func()) {
	if pid == 0 {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if v := treeRSS(pid); v > *peak {
				*peak = v
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func (e *env) optionsJSON() map[string]any {
	return map[string]any{
		"cases": strings.Join(e.o.cases, ","), "tests": strings.Join(e.o.tests, ","),
		"reps": e.o.reps, "duration": e.o.duration.String(), "big_rules": e.o.bigRules, "bulk_size": e.o.bulkSize,
		"egressd_env": strings.Join(e.o.env, " "),
	}
}

// clearLine is what erases a progress line on w: the escape on a terminal,
// nothing in a log file (CI's), where it would only be noise.
func clearLine(w io.Writer) string {
	if f, ok := w.(*os.File); ok && isTerminal(f) {
		return "\r\033[K"
	}
	return ""
}
