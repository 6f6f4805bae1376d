// Package report is what an egressbench run produced and how it is shown:
// report.go holds the raw runs (Record), their medians per test and case
// (Summarize, Median), the machine (ReadMachine), the aligned table on
// stdout, the JSON file and the completeness check of --strict (Complete);
// markdown.go renders BENCHMARKS.md-ready tables with ratios against direct
// and nginx; svg.go plots latency by percentile; targets.go checks issue
// 20's targets (egressd against nginx, HAProxy and direct) for both. It
// runs nothing: the matrix in cmd/egressbench fills a Report.
package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/egressd/egressd/internal/loadgen"
)

// Report is everything a run produced: the raw runs and their medians.
type Report struct {
	Machine Machine           `json:"machine"`
	Options map[string]any    `json:"options"`
	Cases   []string          `json:"cases"`
	Tests   []string          `json:"tests"`
	Skipped map[string]string `json:"skipped,omitempty"` // case -> reason
	Runs    []Record          `json:"runs"`
	Medians []Median          `json:"medians"`
}

// Record is one load run of one test against one case.
type Record struct {
	Test                string          `json:"test"`
	Case                string          `json:"case"`
	Rep                 int             `json:"rep"`
	Result              *loadgen.Result `json:"result,omitempty"`
	Error               string          `json:"error,omitempty"`
	ProxyCPUus          float64         `json:"proxy_cpu_us"`             // proxy CPU time consumed during the run
	CPUPerReqUS         float64         `json:"proxy_cpu_us_per_req"`     // ProxyCPUus / responses
	PeakRSSKiB          int64           `json:"proxy_peak_rss_kib"`       // sampled every 100 ms
	GenCPUPerReqUS      float64         `json:"generator_cpu_us_per_req"` // the load generator's own CPU
	UpstreamCPUPerReqUS float64         `json:"upstream_cpu_us_per_req"`
	BusyBefore          float64         `json:"machine_busy_before"` // busy fraction when the run started
	Busy                float64         `json:"machine_busy_during"` // busy fraction during the run
	Meta                map[string]any  `json:"meta,omitempty"`
}

// Median is the per-metric median over the repetitions of one test and case.
type Median struct {
	Test       string    `json:"test"`
	Case       string    `json:"case"`
	Reps       int       `json:"reps"` // successful repetitions
	Rate       float64   `json:"achieved_rate"`
	P50        float64   `json:"p50_us"`
	P90        float64   `json:"p90_us"`
	P99        float64   `json:"p99_us"`
	P999       float64   `json:"p99_9_us"`
	Max        float64   `json:"max_us"`
	Mean       float64   `json:"mean_us"`
	Errors     int64     `json:"errors"` // summed over repetitions
	Non2xx     int64     `json:"non2xx"` // summed over repetitions
	CPUPerReq  float64   `json:"proxy_cpu_us_per_req"`
	GenCPU     float64   `json:"generator_cpu_us_per_req"`
	UpCPU      float64   `json:"upstream_cpu_us_per_req"`
	PeakRSSKiB float64   `json:"proxy_peak_rss_kib"`
	Busy       float64   `json:"machine_busy"`
	LagP50     float64   `json:"dispatch_lag_p50_us,omitempty"` // generator lateness (open loop)
	LagP99     float64   `json:"dispatch_lag_p99_us,omitempty"`
	Curve      []int64   `json:"curve_us,omitempty"` // median latency at loadgen.CurveQuantiles
	Rates      []float64 `json:"rates_per_rep"`
}

// Machine says where the figures come from.
type Machine struct {
	Date    string `json:"date"`
	CPU     string `json:"cpu"`
	CPUs    int    `json:"cpus"`
	Kernel  string `json:"kernel"`
	Go      string `json:"go"`
	Nginx   string `json:"nginx,omitempty"`
	HAProxy string `json:"haproxy,omitempty"`
	H2load  string `json:"h2load,omitempty"`
	Egressd string `json:"egressd,omitempty"`
	// EgressdB is the --egressd-b binary (case egressd-b).
	EgressdB string `json:"egressd_b,omitempty"`
}

// ReadMachine says where the figures come from: this machine, the peers'
// versions and the egressd binaries (egressdB: the --egressd-b one, or "").
func ReadMachine(egressd, egressdB string) Machine {
	m := Machine{Date: time.Now().UTC().Format(time.RFC3339), CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				m.CPU = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	m.Nginx = firstLine("nginx", "-v")
	m.HAProxy = firstLine("haproxy", "-v")
	m.H2load = firstLine("h2load", "--version")
	if fi, err := os.Stat(egressd); err == nil {
		m.Egressd = filepath.Base(egressd) + " built " + fi.ModTime().UTC().Format(time.RFC3339)
	}
	if fi, err := os.Stat(egressdB); egressdB != "" && err == nil {
		m.EgressdB = egressdB + " built " + fi.ModTime().UTC().Format(time.RFC3339)
	}
	return m
}

// firstLine runs a version command and returns its first output line.
func firstLine(name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return ""
	}
	l, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return l
}

// Summarize computes the medians of every test and case.
func (r *Report) Summarize() {
	r.Medians = nil
	for _, tn := range r.Tests {
		for _, cn := range r.Cases {
			var rs []Record
			for _, rec := range r.Runs {
				if rec.Test == tn && rec.Case == cn && rec.Result != nil {
					rs = append(rs, rec)
				}
			}
			if len(rs) == 0 {
				continue
			}
			r.Medians = append(r.Medians, medianOf(tn, cn, rs))
		}
	}
}

func medianOf(tn, cn string, rs []Record) Median {
	m := Median{Test: tn, Case: cn, Reps: len(rs)}
	pick := func(f func(Record) float64) float64 {
		v := make([]float64, len(rs))
		for i, rec := range rs {
			v[i] = f(rec)
		}
		sort.Float64s(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	m.Rate = pick(func(x Record) float64 { return x.Result.AchievedRate })
	m.P50 = pick(func(x Record) float64 { return float64(x.Result.Latency.P50) })
	m.P90 = pick(func(x Record) float64 { return float64(x.Result.Latency.P90) })
	m.P99 = pick(func(x Record) float64 { return float64(x.Result.Latency.P99) })
	m.P999 = pick(func(x Record) float64 { return float64(x.Result.Latency.P999) })
	m.Max = pick(func(x Record) float64 { return float64(x.Result.Latency.Max) })
	m.Mean = pick(func(x Record) float64 { return float64(x.Result.Latency.Mean) })
	m.CPUPerReq = pick(func(x Record) float64 { return x.CPUPerReqUS })
	m.GenCPU = pick(func(x Record) float64 { return x.GenCPUPerReqUS })
	m.UpCPU = pick(func(x Record) float64 { return x.UpstreamCPUPerReqUS })
	m.PeakRSSKiB = pick(func(x Record) float64 { return float64(x.PeakRSSKiB) })
	m.Busy = pick(func(x Record) float64 { return x.Busy })
	if rs[0].Result.DispatchLag != nil {
		m.LagP50 = pick(func(x Record) float64 { return float64(lagOf(x).P50) })
		m.LagP99 = pick(func(x Record) float64 { return float64(lagOf(x).P99) })
	}
	for _, rec := range rs {
		m.Errors += rec.Result.ErrorCount
		m.Non2xx += rec.Result.Non2xx
		m.Rates = append(m.Rates, rec.Result.AchievedRate)
	}
	if n := len(rs[0].Result.Latency.Curve); n > 0 {
		for i := 0; i < n; i++ {
			m.Curve = append(m.Curve, int64(pick(func(x Record) float64 {
				if i < len(x.Result.Latency.Curve) {
					return float64(x.Result.Latency.Curve[i])
				}
				return 0
			})))
		}
	}
	return m
}

func lagOf(x Record) loadgen.Lag {
	if x.Result.DispatchLag == nil {
		return loadgen.Lag{}
	}
	return *x.Result.DispatchLag
}

// find returns the median of a test and case.
func (r *Report) find(tn, cn string) (Median, bool) {
	for _, m := range r.Medians {
		if m.Test == tn && m.Case == cn {
			return m, true
		}
	}
	return Median{}, false
}

// WriteTable prints the medians as an aligned table.
func (r *Report) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "\negressbench: %s, %d CPUs (%s), kernel %s; medians of %v repetitions\n",
		r.Machine.Date, r.Machine.CPUs, r.Machine.CPU, r.Machine.Kernel, r.Options["reps"])
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "test\tcase\treq/s\tp50\tp90\tp99\tp99.9\tmax\terrors\tnon-2xx\tproxy µs/req\tproxy RSS MiB\tbusy %\t")
	for _, m := range r.Medians {
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%.0f\t\n", m.Test, m.Case, m.Rate,
			us(m.P50), us(m.P90), us(m.P99), us(m.P999), us(m.Max), m.Errors, m.Non2xx,
			opt(m.CPUPerReq, "%.0f"), opt(m.PeakRSSKiB/1024, "%.1f"), 100*m.Busy)
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, g := range r.goals() {
		fmt.Fprintf(w, "target %-4s %s: %s\n", g.met, g.what, g.measured)
	}
	for c, why := range r.Skipped {
		fmt.Fprintf(w, "skipped %s: %s\n", c, why)
	}
}

// us formats a latency in µs; 0 (not measured, e.g. h2load percentiles) as "-".
func us(v float64) string { return opt(v, "%.0f") }

func opt(v float64, format string) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf(format, v)
}

// WriteFiles writes the JSON, markdown and SVG outputs that were asked for.
func (r *Report) WriteFiles(jsonFile, svgDir, mdFile string) error {
	if jsonFile != "" {
		if err := writeJSON(jsonFile, r); err != nil {
			return fmt.Errorf("write json: %w", err)
		}
	}
	var plots []string
	if svgDir != "" {
		var err error
		if plots, err = r.writePlots(svgDir); err != nil {
			return fmt.Errorf("write plots: %w", err)
		}
	}
	if mdFile != "" {
		if err := os.WriteFile(mdFile, []byte(r.markdown(plots, mdFile)), 0o644); err != nil {
			return fmt.Errorf("write markdown: %w", err)
		}
	}
	return nil
}

// Complete reports every case that was skipped and every run that failed or
// got no successful answer.
func (r *Report) Complete() error {
	var bad []string
	for c, why := range r.Skipped {
		bad = append(bad, fmt.Sprintf("case %s skipped: %s", c, why))
	}
	for _, rec := range r.Runs {
		switch {
		case rec.Error != "":
			bad = append(bad, fmt.Sprintf("%s %s: %s", rec.Test, rec.Case, rec.Error))
		case rec.Result == nil || rec.Result.Responses-rec.Result.Non2xx == 0:
			bad = append(bad, fmt.Sprintf("%s %s: no 2xx answers", rec.Test, rec.Case))
		}
	}
	if len(bad) > 0 {
		return errors.New("incomplete run:\n  " + strings.Join(bad, "\n  "))
	}
	return nil
}

// writeJSON writes v indented to path.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
