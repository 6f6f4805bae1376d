package loadgen

import (
	"strconv"
	"time"
)

// Result is the outcome of one run. Latencies are in microseconds.
type Result struct {
	Mode         string           `json:"mode"` // "open" or "closed"
	Rate         float64          `json:"rate,omitempty"`
	Conns        int              `json:"conns"`     // workers at the end of the run
	Dials        int64            `json:"dials"`     // connections opened
	Seconds      float64          `json:"seconds"`   // wall time from the first due time to the last answer
	Responses    int64            `json:"responses"` // answered requests, any status
	Status       map[string]int64 `json:"status"`    // responses by status code
	Non2xx       int64            `json:"non2xx"`
	Errors       map[string]int64 `json:"errors,omitempty"` // by kind: ErrDial, ErrTimeout, ...
	ErrorCount   int64            `json:"error_count"`
	AchievedRate float64          `json:"achieved_rate"` // responses per second
	Latency      Latency          `json:"latency_us"`
	// DispatchLag (open loop) is how late requests were handed to a worker
	// after their due time: the generator's own timing error plus queueing
	// when every worker was busy. It is part of Latency.
	DispatchLag *Lag `json:"dispatch_lag_us,omitempty"`
}

// Lag summarises the dispatch lag histogram (µs).
type Lag struct {
	P50 int64 `json:"p50"`
	P99 int64 `json:"p99"`
	Max int64 `json:"max"`
}

// Latency summarises the latency histogram of the answered requests.
type Latency struct {
	P50  int64 `json:"p50"`
	P90  int64 `json:"p90"`
	P99  int64 `json:"p99"`
	P999 int64 `json:"p99_9"`
	Max  int64 `json:"max"`
	Mean int64 `json:"mean"`
	// Curve holds the latency at each of CurveQuantiles, for plots.
	Curve []int64 `json:"curve"`
}

// CurveQuantiles are the percentiles sampled into Latency.Curve: spaced evenly
// on a "number of nines" scale, the usual way latency percentiles are plotted.
var CurveQuantiles = []float64{
	0, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 92.5, 95, 96.5, 97.5, 98.5, 99,
	99.25, 99.5, 99.65, 99.75, 99.85, 99.9, 99.95, 99.99, 100,
}

// result merges the workers' histograms and counters.
func (r *runner) result(mode string, elapsed time.Duration) *Result {
	h := newHistogram()
	res := &Result{Mode: mode, Rate: r.cfg.Rate, Dials: r.dials.Load(), Seconds: elapsed.Seconds(),
		Status: map[string]int64{}, Errors: map[string]int64{}}
	r.mu.Lock()
	defer r.mu.Unlock()
	res.Conns = len(r.workers)
	for _, w := range r.workers {
		h.Merge(w.hist)
		for kind, n := range w.errs {
			res.Errors[kind] += n
			res.ErrorCount += n
		}
		for code, n := range w.status {
			res.Status[strconv.Itoa(code)] += n
			res.Responses += n
			if code/100 != 2 {
				res.Non2xx += n
			}
		}
	}
	if elapsed > 0 {
		res.AchievedRate = float64(res.Responses) / elapsed.Seconds()
	}
	if h.TotalCount() > 0 {
		res.Latency = Latency{
			P50: h.ValueAtQuantile(50), P90: h.ValueAtQuantile(90), P99: h.ValueAtQuantile(99),
			P999: h.ValueAtQuantile(99.9), Max: h.Max(), Mean: int64(h.Mean()),
		}
		for _, q := range CurveQuantiles {
			res.Latency.Curve = append(res.Latency.Curve, h.ValueAtQuantile(q))
		}
	}
	return res
}
