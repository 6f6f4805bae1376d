package report

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/egressd/egressd/cmd/egressbench/internal/scenario"
	"github.com/egressd/egressd/internal/loadgen"
)

// writePlots writes one latency-percentile SVG per open-loop test into dir
// and returns their paths.
func (r *Report) writePlots(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var paths []string
	for _, tn := range r.Tests {
		ts, _ := scenario.Parse(tn)
		if ts.Rate == 0 {
			continue
		}
		var series []plotSeries
		for _, c := range r.Cases {
			if m, ok := r.find(tn, c); ok && len(m.Curve) == len(loadgen.CurveQuantiles) {
				series = append(series, plotSeries{name: c, us: m.Curve})
			}
		}
		if len(series) == 0 {
			continue
		}
		p := filepath.Join(dir, tn+".svg")
		title := fmt.Sprintf("Latency by percentile, open loop %s req/s keep-alive (medians)", strings.TrimPrefix(tn, "lat"))
		if ts.GRPC {
			title = fmt.Sprintf("Latency by percentile, gRPC unary, open loop %.0f calls/s (medians)", ts.Rate)
		}
		if err := os.WriteFile(p, []byte(percentilePlot(title, series)), 0o644); err != nil {
			return nil, err
		}
		paths = append(paths, p)
	}
	return paths, nil
}

type plotSeries struct {
	name string
	us   []int64 // latency at loadgen.CurveQuantiles
}

// Plot geometry (SVG user units).
const (
	plotW, plotH        = 760, 420
	padL, padR          = 70, 150
	padT, padB          = 40, 50
	innerW, innerH      = plotW - padL - padR, plotH - padT - padB
	maxNines            = 4.0 // the x axis ends at 99.99 %
	palette             = "#1f77b4,#d62728,#2ca02c,#ff7f0e,#9467bd,#8c564b,#e377c2,#7f7f7f"
	axisStyle           = `stroke="#444" stroke-width="1"`
	gridStyle           = `stroke="#ddd" stroke-width="1"`
	textStyle           = `font-family="sans-serif" font-size="12" fill="#222"`
	smallTextStyle      = `font-family="sans-serif" font-size="11" fill="#444"`
	legendLineLength    = 18
	legendLineSpacing   = 18
	curveStrokeWidth    = 2
	percentileTickLabel = "%s%%"
)

// nines maps a percentile onto the x axis: 0 at p0, 1 at p90, 2 at p99, ...
func nines(q float64) float64 {
	if q >= 100 {
		return maxNines
	}
	return math.Min(-math.Log10(1-q/100), maxNines)
}

// percentilePlot draws latency (log scale, y) against percentile (x, spaced by
// number of nines), one line per series.
func percentilePlot(title string, series []plotSeries) string {
	lo, hi := math.Inf(1), 0.0
	for _, s := range series {
		for i, v := range s.us {
			if loadgen.CurveQuantiles[i] > 99.99 {
				continue
			}
			lo, hi = math.Min(lo, float64(max(v, 1))), math.Max(hi, float64(v))
		}
	}
	ylo := math.Pow(10, math.Floor(math.Log10(lo)))
	yhi := math.Pow(10, math.Ceil(math.Log10(math.Max(hi, ylo*10))))
	x := func(q float64) float64 { return padL + nines(q)/maxNines*innerW }
	y := func(v float64) float64 {
		return padT + innerH - (math.Log10(math.Max(v, ylo))-math.Log10(ylo))/(math.Log10(yhi)-math.Log10(ylo))*innerH
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d">`+"\n", plotW, plotH, plotW, plotH)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="22" %s font-weight="bold">%s</text>`+"\n", padL, textStyle, title)
	for _, q := range []float64{0, 50, 90, 99, 99.9, 99.99} {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" %s/>`+"\n", x(q), padT, x(q), padT+innerH, gridStyle)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" %s>`+percentileTickLabel+`</text>`+"\n",
			x(q), padT+innerH+18, smallTextStyle, strings.TrimSuffix(fmt.Sprintf("%g", q), ".0"))
	}
	for v := ylo; v <= yhi*1.0001; v *= 10 {
		for _, k := range []float64{1, 2, 5} {
			if v*k > yhi*1.0001 {
				break
			}
			fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" %s/>`+"\n", padL, y(v*k), padL+innerW, y(v*k), gridStyle)
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" %s>%s</text>`+"\n", padL-6, y(v*k)+4, smallTextStyle, fmtMicros(v*k))
		}
	}
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" %s/>`+"\n", padL, padT+innerH, padL+innerW, padT+innerH, axisStyle)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" %s/>`+"\n", padL, padT, padL, padT+innerH, axisStyle)
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" %s>percentile</text>`+"\n", padL+innerW/2, plotH-10, textStyle)
	fmt.Fprintf(&b, `<text x="16" y="%d" transform="rotate(-90 16 %d)" text-anchor="middle" %s>latency (log scale)</text>`+"\n", padT+innerH/2, padT+innerH/2, textStyle)
	colors := strings.Split(palette, ",")
	for i, s := range series {
		var pts []string
		for j, v := range s.us {
			if q := loadgen.CurveQuantiles[j]; q <= 99.99 {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(q), y(float64(v))))
			}
		}
		c := colors[i%len(colors)]
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="%d" points="%s"/>`+"\n", c, curveStrokeWidth, strings.Join(pts, " "))
		ly := padT + 10 + i*legendLineSpacing
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"/>`+"\n", padL+innerW+12, ly, padL+innerW+12+legendLineLength, ly, c)
		fmt.Fprintf(&b, `<text x="%d" y="%d" %s>%s</text>`+"\n", padL+innerW+36, ly+4, textStyle, s.name)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// fmtMicros labels an axis value given in µs.
func fmtMicros(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%gs", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%gms", v/1e3)
	}
	return fmt.Sprintf("%gµs", v)
}
