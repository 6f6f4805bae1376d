package report

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/egressd/egressd/cmd/egressbench/internal/scenario"
)

// markdown renders the medians as BENCHMARKS.md-ready tables, with ratios
// against direct and nginx, and links to the plots.
func (r *Report) markdown(plots []string, mdFile string) string {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "Run of %s on %d × %s, kernel %s, %s; %s; %s; %s.\n", m.Date, m.CPUs, m.CPU, m.Kernel, m.Go, m.Nginx, m.HAProxy, m.H2load)
	fmt.Fprintf(&b, "Medians of %v repetitions of %v per run, tests and cases interleaved and rotated. Latencies in µs.\n\n", r.Options["reps"], r.Options["duration"])
	for c, why := range r.Skipped {
		fmt.Fprintf(&b, "- case **%s** did not run: %s\n", c, why)
	}
	if len(r.Skipped) > 0 {
		b.WriteString("\n")
	}
	r.mdGoals(&b)
	for _, tn := range r.Tests {
		ts, _ := scenario.Parse(tn)
		switch {
		case ts.Rate > 0:
			r.mdLatency(&b, tn)
		case ts.Hold:
			r.mdMemory(&b, tn)
		case ts.Bulk != "":
			r.mdBulk(&b, tn, ts)
		default:
			r.mdThroughput(&b, tn, ts)
		}
	}
	mdDir := filepath.Dir(mdFile)
	for _, p := range plots {
		rel, err := filepath.Rel(mdDir, p)
		if err != nil {
			rel = p
		}
		fmt.Fprintf(&b, "![%s](%s)\n\n", strings.TrimSuffix(filepath.Base(p), ".svg"), rel)
	}
	return b.String()
}

// mdLatency: open-loop latency, added latency over direct, ratio to nginx.
func (r *Report) mdLatency(b *strings.Builder, tn string) {
	if ts, _ := scenario.Parse(tn); ts.GRPC {
		fmt.Fprintf(b, "### %s: gRPC unary calls (grpc-go, health Check), open loop at %.0f calls/s on %d connections\n\n", tn, ts.Rate, ts.Conns)
	} else {
		fmt.Fprintf(b, "### %s: open loop at %s req/s, keep-alive\n\n", tn, strings.TrimPrefix(tn, "lat"))
	}
	b.WriteString("| case | achieved req/s | p50 / p90 / p99 / p99.9 | added p50 / p99 vs direct | p50 × nginx | proxy CPU µs/req | errors / non-2xx | generator lag p50 / p99 |\n|---|---|---|---|---|---|---|---|\n")
	d, hasD := r.find(tn, "direct")
	n, hasN := r.find(tn, "nginx")
	for _, m := range r.rows(tn) {
		c := m.Case
		added, vsN := "–", "–"
		if hasD && c != "direct" {
			added = fmt.Sprintf("%+.0f / %+.0f", m.P50-d.P50, m.P99-d.P99)
		}
		if hasN && c != "nginx" && n.P50 > 0 {
			vsN = fmt.Sprintf("%.2f", m.P50/n.P50)
		}
		fmt.Fprintf(b, "| %s | %.0f | %.0f / %.0f / %.0f / %.0f | %s | %s | %s | %d / %d | %.0f / %.0f |\n", c, m.Rate,
			m.P50, m.P90, m.P99, m.P999, added, vsN, opt(m.CPUPerReq, "%.0f"), m.Errors, m.Non2xx, m.LagP50, m.LagP99)
	}
	b.WriteString("\n")
}

// mdThroughput: closed-loop rate with ratios to direct and nginx.
func (r *Report) mdThroughput(b *strings.Builder, tn string, ts scenario.Test) {
	what := fmt.Sprintf("%d connections back to back", ts.Conns)
	if ts.Conns == 1 {
		what = "1 connection back to back"
	}
	switch {
	case ts.H2C:
		what = fmt.Sprintf("h2load, h2c prior knowledge, %d clients × 10 streams (h2load reports mean and max only)", ts.Conns)
	case ts.GRPC:
		what = fmt.Sprintf("gRPC unary calls (grpc-go, health Check), %d connections × %d calls in flight", ts.Conns, scenario.GRPCStreams)
	case ts.NewConn:
		what += ", a new connection per request"
	default:
		what += ", keep-alive"
	}
	fmt.Fprintf(b, "### %s: %s\n\n", tn, what)
	b.WriteString("| case | req/s | × direct | × nginx | p50 / p99 (closed loop) | mean | proxy CPU µs/req | generator / upstream CPU µs/req | errors / non-2xx |\n|---|---|---|---|---|---|---|---|---|\n")
	d, hasD := r.find(tn, "direct")
	n, hasN := r.find(tn, "nginx")
	for _, m := range r.rows(tn) {
		c := m.Case
		vsD, vsN := "–", "–"
		if hasD && d.Rate > 0 {
			vsD = fmt.Sprintf("%.2f", m.Rate/d.Rate)
		}
		if hasN && n.Rate > 0 {
			vsN = fmt.Sprintf("%.2f", m.Rate/n.Rate)
		}
		fmt.Fprintf(b, "| %s | %.0f | %s | %s | %s / %s | %.0f | %s | %s / %s | %d / %d |\n", c, m.Rate, vsD, vsN,
			us(m.P50), us(m.P99), m.Mean, opt(m.CPUPerReq, "%.0f"), opt(m.GenCPU, "%.0f"), opt(m.UpCPU, "%.0f"), m.Errors, m.Non2xx)
	}
	b.WriteString("\n")
}

// mdBulk: one large body per run: throughput and the proxy's CPU per GiB.
func (r *Report) mdBulk(b *strings.Builder, tn string, ts scenario.Test) {
	size, _ := r.Options["bulk_size"].(int64)
	if f, ok := r.Options["bulk_size"].(float64); ok { // read back from JSON
		size = int64(f)
	}
	how := "Content-Length"
	if ts.Chunked {
		how = "chunked"
	}
	verb := "download (GET)"
	if ts.Bulk == "up" {
		verb = "upload (PUT)"
	}
	fmt.Fprintf(b, "### %s: one %s %s through an HTTP port, %s, curl\n\n", tn, sizeText(size), verb, how)
	b.WriteString("| case | GB/s | × direct | × nginx | proxy CPU ms per GiB | errors / non-2xx |\n|---|---|---|---|---|---|\n")
	d, hasD := r.find(tn, "direct")
	n, hasN := r.find(tn, "nginx")
	for _, m := range r.rows(tn) {
		vsD, vsN, cpu := "–", "–", "-"
		if hasD && d.Rate > 0 {
			vsD = fmt.Sprintf("%.2f", m.Rate/d.Rate)
		}
		if hasN && n.Rate > 0 {
			vsN = fmt.Sprintf("%.2f", m.Rate/n.Rate)
		}
		if m.CPUPerReq > 0 && size > 0 {
			cpu = fmt.Sprintf("%.0f", m.CPUPerReq/1000/(float64(size)/(1<<30)))
		}
		fmt.Fprintf(b, "| %s | %.2f | %s | %s | %s | %d / %d |\n", m.Case, m.Rate/1e9, vsD, vsN, cpu, m.Errors, m.Non2xx)
	}
	b.WriteString("\n")
}

// sizeText writes a byte count in binary units.
func sizeText(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d-byte", n)
}

// mdMemory: peak proxy RSS while holding many open client connections.
func (r *Report) mdMemory(b *strings.Builder, tn string) {
	ts, _ := scenario.Parse(tn)
	fmt.Fprintf(b, "### %s: peak proxy RSS with %d open keep-alive client connections\n\n", tn, ts.Conns)
	b.WriteString("| case | peak RSS MiB (process tree) | connections answered | errors |\n|---|---|---|---|\n")
	for _, m := range r.rows(tn) {
		c := m.Case
		answered := int64(0)
		for _, rec := range r.Runs {
			if rec.Test == tn && rec.Case == c && rec.Result != nil {
				answered = rec.Result.Responses
			}
		}
		fmt.Fprintf(b, "| %s | %.1f | %d | %d |\n", c, m.PeakRSSKiB/1024, answered, m.Errors)
	}
	b.WriteString("\n")
}

// rows returns the medians of test tn in case order.
func (r *Report) rows(tn string) []Median {
	var out []Median
	for _, c := range r.Cases {
		if m, ok := r.find(tn, c); ok {
			out = append(out, m)
		}
	}
	return out
}
