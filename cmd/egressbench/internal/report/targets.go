package report

import (
	"fmt"
	"strings"

	"github.com/egressd/egressd/cmd/egressbench/internal/scenario"
)

// target check of issues 8 and 20, evaluated on the medians of one run.
type goal struct {
	what     string
	measured string
	met      string // "yes", "no", or "n/a" (a case or test did not run)
}

// goals evaluates the targets: ratios within this run, on this
// machine. A missing case or test gives "n/a".
func (r *Report) goals() []goal {
	get := func(tn, cn string) (Median, bool) { return r.find(tn, cn) }
	yes := func(ok bool) string {
		if ok {
			return "yes"
		}
		return "no"
	}
	var gs []goal
	add := func(what string, f func() (string, string)) {
		g := goal{what: what, met: "n/a", measured: "–"}
		if m, ok := f(); m != "" {
			g.measured, g.met = m, ok
		}
		gs = append(gs, g)
	}
	lat := "lat2000"
	add("proxy CPU per request, keep-alive (at 2000 req/s and at saturation) ≤ nginx's", func() (string, string) {
		e, ok1 := get(lat, "egressd")
		n, ok2 := get(lat, "nginx")
		ek, ok3 := get("max-ka", "egressd")
		nk, ok4 := get("max-ka", "nginx")
		if !(ok1 && ok2 && ok3 && ok4) {
			return "", ""
		}
		return fmt.Sprintf("%.0f vs %.0f µs at 2000 req/s; %.0f vs %.0f µs saturated", e.CPUPerReq, n.CPUPerReq, ek.CPUPerReq, nk.CPUPerReq),
			yes(e.CPUPerReq <= n.CPUPerReq && ek.CPUPerReq <= nk.CPUPerReq)
	})
	add("max keep-alive throughput ≥ nginx's", func() (string, string) {
		e, ok1 := get("max-ka", "egressd")
		n, ok2 := get("max-ka", "nginx")
		if !ok1 || !ok2 {
			return "", ""
		}
		return fmt.Sprintf("%.0f vs %.0f req/s (%.2f×)", e.Rate, n.Rate, e.Rate/n.Rate), yes(e.Rate >= n.Rate)
	})
	add("added latency at 2000 req/s keep-alive (p50, p99) ≤ nginx's", func() (string, string) {
		d, ok1 := get(lat, "direct")
		e, ok2 := get(lat, "egressd")
		n, ok3 := get(lat, "nginx")
		if !(ok1 && ok2 && ok3) {
			return "", ""
		}
		ep50, ep99, np50, np99 := e.P50-d.P50, e.P99-d.P99, n.P50-d.P50, n.P99-d.P99
		return fmt.Sprintf("egressd %+.0f / %+.0f µs, nginx %+.0f / %+.0f µs", ep50, ep99, np50, np99),
			yes(ep50 <= np50 && ep99 <= np99)
	})
	add("new connection per request: rate ≥ HAProxy's", func() (string, string) {
		e, ok1 := get("max-close", "egressd")
		h, ok2 := get("max-close", "haproxy")
		if !ok1 || !ok2 {
			return "", ""
		}
		return fmt.Sprintf("%.0f vs %.0f req/s (%.2f×)", e.Rate, h.Rate, e.Rate/h.Rate), yes(e.Rate >= h.Rate)
	})
	add("HTTPS origination p50 ≤ 1.2× plain HTTP (2000 req/s)", func() (string, string) {
		s, ok1 := get(lat, "egressd-https")
		p, ok2 := get(lat, "egressd")
		if !ok1 || !ok2 || p.P50 == 0 {
			return "", ""
		}
		return fmt.Sprintf("%.0f vs %.0f µs (%.2f×)", s.P50, p.P50, s.P50/p.P50), yes(s.P50 <= 1.2*p.P50)
	})
	add("100,000 rules cost no measurable latency over 10 (2000 req/s; p50 within 10 %)", func() (string, string) {
		b, ok1 := get(lat, "egressd-100k")
		p, ok2 := get(lat, "egressd")
		if !ok1 || !ok2 || p.P50 == 0 {
			return "", ""
		}
		return fmt.Sprintf("p50 %.0f vs %.0f µs (%.2f×), p99 %.0f vs %.0f µs, CPU %.0f vs %.0f µs/req", b.P50, p.P50, b.P50/p.P50,
			b.P99, p.P99, b.CPUPerReq, p.CPUPerReq), yes(b.P50 <= 1.1*p.P50)
	})
	for _, tn := range []string{"h2c", "grpc"} {
		add(tn+": throughput ≥ nginx's and proxy CPU per request ≤ nginx's", func() (string, string) {
			e, ok1 := get(tn, "egressd")
			n, ok2 := get(tn, "nginx")
			if !ok1 || !ok2 || n.Rate == 0 {
				return "", ""
			}
			return fmt.Sprintf("%.0f vs %.0f req/s (%.2f×); %.0f vs %.0f µs/req", e.Rate, n.Rate, e.Rate/n.Rate, e.CPUPerReq, n.CPUPerReq),
				yes(e.Rate >= n.Rate && e.CPUPerReq <= n.CPUPerReq)
		})
	}
	add("gRPC unary, open loop: added p50 ≤ nginx's (the lowest grpcRATE of the run)", func() (string, string) {
		for _, tn := range r.Tests {
			if ts, _ := scenario.Parse(tn); !ts.GRPC || ts.Rate == 0 {
				continue
			}
			d, ok1 := get(tn, "direct")
			e, ok2 := get(tn, "egressd")
			n, ok3 := get(tn, "nginx")
			if !(ok1 && ok2 && ok3) {
				return "", ""
			}
			return fmt.Sprintf("%s: egressd %+.0f µs, nginx %+.0f µs (p99 %+.0f vs %+.0f); CPU %.0f vs %.0f µs/call", tn,
				e.P50-d.P50, n.P50-d.P50, e.P99-d.P99, n.P99-d.P99, e.CPUPerReq, n.CPUPerReq), yes(e.P50 <= n.P50)
		}
		return "", ""
	})
	add("HTTP/1.1 RSS with 1,000 open client connections ≤ 1.2× nginx's", func() (string, string) {
		e, ok1 := get("conns1000", "egressd")
		n, ok2 := get("conns1000", "nginx")
		if !ok1 || !ok2 || n.PeakRSSKiB == 0 {
			return "", ""
		}
		return fmt.Sprintf("%.1f vs %.1f MiB (%.2f×)", e.PeakRSSKiB/1024, n.PeakRSSKiB/1024, e.PeakRSSKiB/n.PeakRSSKiB),
			yes(e.PeakRSSKiB <= 1.2*n.PeakRSSKiB)
	})
	for _, tn := range []string{"bulk-down", "bulk-up"} {
		add(tn+": ≥ 0.8× direct and ≥ nginx", func() (string, string) {
			e, ok1 := get(tn, "egressd")
			d, ok2 := get(tn, "direct")
			n, ok3 := get(tn, "nginx")
			if !ok1 || !ok2 || !ok3 || d.Rate == 0 || n.Rate == 0 {
				return "", ""
			}
			return fmt.Sprintf("%.2f vs direct %.2f, nginx %.2f GB/s (%.2f× direct, %.2f× nginx)", e.Rate/1e9, d.Rate/1e9, n.Rate/1e9, e.Rate/d.Rate, e.Rate/n.Rate),
				yes(e.Rate >= 0.8*d.Rate && e.Rate >= n.Rate)
		})
	}
	add("RSS < 64 MiB with 1,000 open client connections", func() (string, string) {
		e, ok := get("conns1000", "egressd")
		if !ok {
			return "", ""
		}
		return fmt.Sprintf("%.1f MiB", e.PeakRSSKiB/1024), yes(e.PeakRSSKiB < 64*1024)
	})
	return gs
}

// mdGoals renders the targets as a markdown table.
func (r *Report) mdGoals(b *strings.Builder) {
	b.WriteString("### Targets of issues 8 and 20 (this run)\n\n| target | measured | met |\n|---|---|---|\n")
	for _, g := range r.goals() {
		fmt.Fprintf(b, "| %s | %s | %s |\n", g.what, g.measured, g.met)
	}
	b.WriteString("\n")
}
