package report

import (
	"encoding/xml"
	"strings"
	"testing"

	"github.com/egressd/egressd/internal/loadgen"
)

// sampleReport is a report with three repetitions of two tests.
func sampleReport() *Report {
	r := &Report{Cases: []string{"direct", "nginx", "egressd"}, Tests: []string{"lat2000", "max-ka"},
		Options: map[string]any{"reps": 3, "duration": "1s"}, Skipped: map[string]string{"haproxy": "not installed"}}
	for rep := 1; rep <= 3; rep++ {
		for i, c := range r.Cases {
			base := int64(100 * (i + 1) * rep)
			curve := make([]int64, len(loadgen.CurveQuantiles))
			for j := range curve {
				curve[j] = base + int64(j*10)
			}
			r.Runs = append(r.Runs,
				Record{Test: "lat2000", Case: c, Rep: rep, Result: &loadgen.Result{AchievedRate: 2000, Responses: 2000,
					Latency: loadgen.Latency{P50: base, P90: 2 * base, P99: 3 * base, P999: 4 * base, Max: 5 * base, Curve: curve}}},
				Record{Test: "max-ka", Case: c, Rep: rep, CPUPerReqUS: 20, Result: &loadgen.Result{AchievedRate: float64(30000 / (i + 1) * rep), Responses: 1}})
		}
	}
	r.Summarize()
	return r
}

func TestMediansAndMarkdown(t *testing.T) {
	r := sampleReport()
	m, ok := r.find("lat2000", "nginx")
	if !ok || m.P50 != 400 || m.Reps != 3 { // nginx p50 per rep: 200, 400, 600
		t.Fatalf("median nginx lat2000 = %+v", m)
	}
	md := r.markdown(nil, "x/results.md")
	for _, want := range []string{
		"| egressd | 2000 | 600 / 1200 / 1800 / 2400 | +400 / +1200 | 1.50 |", // added vs direct (200 / 600), × nginx
		"| nginx | 30000 | 0.50 | 1.00 |",                                     // max-ka ratios: 15000×2 median vs 30000×2
		"case **haproxy** did not run: not installed",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestPlotIsWellFormedSVG(t *testing.T) {
	r := sampleReport()
	m, _ := r.find("lat2000", "egressd")
	svg := percentilePlot("test", []plotSeries{{name: "egressd", us: m.Curve}})
	d := xml.NewDecoder(strings.NewReader(svg))
	for {
		_, err := d.Token()
		if err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("invalid SVG: %v", err)
			}
			break
		}
	}
	if !strings.Contains(svg, "<polyline") || !strings.Contains(svg, ">egressd</text>") {
		t.Error("plot lacks the series or its legend")
	}
}

// A bulk run reports GB/s and the proxy's CPU per GiB, and its target line
// compares egressd with direct and nginx.
func TestBulkMarkdown(t *testing.T) {
	r := &Report{Cases: []string{"direct", "nginx", "egressd"}, Tests: []string{"bulk-down"},
		Options: map[string]any{"reps": 1, "duration": "1s", "bulk_size": int64(2 << 30)}}
	for c, rate := range map[string]float64{"direct": 2e9, "nginx": 1e9, "egressd": 1.8e9} {
		rec := Record{Test: "bulk-down", Case: c, Rep: 1, Result: &loadgen.Result{Responses: 1, AchievedRate: rate}}
		if c != "direct" {
			rec.CPUPerReqUS = 500_000 // 0.5 s for 2 GiB
		}
		r.Runs = append(r.Runs, rec)
	}
	r.Summarize()
	md := r.markdown(nil, "x.md")
	for _, want := range []string{"one 2 GiB download (GET)", "| egressd | 1.80 | 0.90 | 1.80 | 250 | 0 / 0 |",
		"| bulk-down: ≥ 0.8× direct and ≥ nginx | 1.80 vs direct 2.00, nginx 1.00 GB/s (0.90× direct, 1.80× nginx) | yes |"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}
