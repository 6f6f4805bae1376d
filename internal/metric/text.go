package metric

import (
	"bufio"
	"compress/gzip"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
)

// ContentType is the text exposition format's.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// WriteText writes fams in the text exposition format 0.0.4, as
// client_golang's expfmt does: # HELP and # TYPE lines, then the points;
// a histogram's as _bucket{le=…} (cumulative), _sum and _count.
func WriteText(w io.Writer, fams []Family) error {
	bw := bufio.NewWriter(w)
	var b []byte
	for _, f := range fams {
		b = b[:0]
		if f.Help != "" {
			b = append(b, "# HELP "...)
			b = append(b, f.Name...)
			b = append(b, ' ')
			b = appendEscaped(b, f.Help, false)
			b = append(b, '\n')
		}
		b = append(b, "# TYPE "...)
		b = append(b, f.Name...)
		b = append(b, ' ')
		b = append(b, f.Type...)
		b = append(b, '\n')
		for _, p := range f.Points {
			b = appendPoint(b, f.Name, f.Type, p)
		}
		if _, err := bw.Write(b); err != nil {
			return err
		}
	}
	return bw.Flush()
}

func appendPoint(b []byte, name string, t Type, p Point) []byte {
	switch t {
	case HistogramType:
		for i, le := range p.Bounds {
			b = appendSeries(b, name, "_bucket", p.Labels, "le", le)
			b = strconv.AppendUint(b, p.Counts[i], 10)
			b = append(b, '\n')
		}
	case SummaryType:
		for _, q := range p.Quantiles {
			b = appendSeries(b, name, "", p.Labels, "quantile", q[0])
			b = appendFloat(b, q[1])
			b = append(b, '\n')
		}
	default:
		b = appendSeries(b, name, "", p.Labels, "", 0)
		b = appendFloat(b, p.Value)
		return append(b, '\n')
	}
	b = appendSeries(b, name, "_sum", p.Labels, "", 0)
	b = appendFloat(b, p.Sum)
	b = append(b, '\n')
	b = appendSeries(b, name, "_count", p.Labels, "", 0)
	b = strconv.AppendUint(b, p.Count, 10)
	return append(b, '\n')
}

// appendSeries appends name+suffix and its labels, the extra label (le,
// quantile) last, and the space before the value.
func appendSeries(b []byte, name, suffix string, ls []Label, extra string, extraValue float64) []byte {
	b = append(append(b, name...), suffix...)
	if len(ls) > 0 || extra != "" {
		b = append(b, '{')
		for i, l := range ls {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(append(b, l.Name...), `="`...)
			b = appendEscaped(b, l.Value, true)
			b = append(b, '"')
		}
		if extra != "" {
			if len(ls) > 0 {
				b = append(b, ',')
			}
			b = append(append(b, extra...), `="`...)
			b = appendFloat(b, extraValue)
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	return append(b, ' ')
}

// appendEscaped appends s with backslashes and newlines escaped, and
// double quotes too in a label value (in help text they stay).
func appendEscaped(b []byte, s string, quote bool) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			b = append(b, `\\`...)
		case c == '\n':
			b = append(b, `\n`...)
		case c == '"' && quote:
			b = append(b, `\"`...)
		default:
			b = append(b, c)
		}
	}
	return b
}

// appendFloat formats f as expfmt does: shortest 'g' form, +Inf, -Inf, NaN.
func appendFloat(b []byte, f float64) []byte {
	switch {
	case math.IsInf(f, 1):
		return append(b, "+Inf"...)
	case math.IsInf(f, -1):
		return append(b, "-Inf"...)
	case math.IsNaN(f):
		return append(b, "NaN"...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}

// Handler serves r's families on GET, as promhttp did: gzip when accepted;
// a gathering error (a collector's error or panic) answers 500 with the
// error, logged to log; a write error stops the answer. Both are counted
// in promhttp_metric_handler_errors_total{cause}, registered on r. A
// name[] query parameter keeps only the families named.
// The handlers of one registry share the family.
func Handler(r *Registry, log *slog.Logger) http.Handler {
	r.mu.Lock()
	if r.handlerErrors == nil {
		r.handlerErrors = NewCounterVec("promhttp_metric_handler_errors_total",
			"Total number of internal errors encountered by the promhttp metric handler.", "cause")
	}
	errs := r.handlerErrors
	r.mu.Unlock()
	gathering, encoding := errs.With("gathering"), errs.With("encoding")
	_ = r.Register(errs) // an error: registered by an earlier Handler
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		fams, err := r.Gather()
		if err != nil {
			log.Error("error gathering metrics", "err", err)
			gathering.Inc()
			http.Error(w, "An error has occurred while serving metrics:\n\n"+err.Error(), http.StatusInternalServerError)
			return
		}
		if names := req.URL.Query()["name[]"]; len(names) > 0 {
			kept := fams[:0]
			for _, f := range fams {
				for _, n := range names {
					if f.Name == n {
						kept = append(kept, f)
						break
					}
				}
			}
			fams = kept
		}
		h := w.Header()
		h.Add("Vary", "Accept")
		h.Add("Vary", "Accept-Encoding")
		h.Set("Content-Type", ContentType)
		var out io.Writer = w
		if acceptsGzip(req.Header.Get("Accept-Encoding")) {
			h.Set("Content-Encoding", "gzip")
			gz := gzip.NewWriter(w)
			defer gz.Close()
			out = gz
		}
		if err := WriteText(out, fams); err != nil {
			log.Error("error encoding and sending metric family", "err", err)
			encoding.Inc()
		}
	})
}

// acceptsGzip reports whether an Accept-Encoding value lists gzip with a
// q above 0.
func acceptsGzip(v string) bool {
	for _, part := range strings.Split(v, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			continue
		}
		q, ok := strings.CutPrefix(strings.ReplaceAll(params, " ", ""), "q=")
		if f, err := strconv.ParseFloat(q, 64); ok && err == nil && f == 0 {
			return false
		}
		return true
	}
	return false
}
