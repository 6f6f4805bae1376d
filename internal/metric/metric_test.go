package metric_test

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/egressd/egressd/internal/metric"
	"github.com/egressd/egressd/internal/metric/metrictest"
)

var buckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// nasty label values: what a rule name from a user's file may hold.
var nasty = []string{`quo"te`, `back\slash`, "new\nline", `\"\n`, "ünïcode", ""}

// fill registers on reg the same families in both libraries' terms and
// feeds them the same values.
func fill(t *testing.T, reg *metric.Registry, preg *prometheus.Registry) {
	t.Helper()
	req := metric.NewCounterVec("egressd_requests_total", "Requests \\ by\ndecision \"quoted\".", "decision", "rule")
	preq := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "egressd_requests_total", Help: "Requests \\ by\ndecision \"quoted\"."}, []string{"decision", "rule"})
	dur := metric.NewHistogramVec("egressd_request_duration_seconds", "Time.", buckets, "decision")
	pdur := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "egressd_request_duration_seconds", Help: "Time.", Buckets: buckets}, []string{"decision"})
	open := metric.NewGauge("egressd_open_connections", "Open.")
	popen := prometheus.NewGauge(prometheus.GaugeOpts{Name: "egressd_open_connections", Help: "Open."})
	limitDesc := metric.NewDesc("egressd_limit", "Limits.", metric.GaugeType, "limit")
	plimitDesc := prometheus.NewDesc("egressd_limit", "Limits.", []string{"limit"}, nil)
	limits := map[string]float64{"max_conns": 9488, "memory_bytes": 2412960, "big": math.MaxUint64, "tiny": 1e-7, "neg": -1, "frac": 0.03, "inf": math.Inf(1)}
	reg.MustRegister(req, dur, open, metric.Func(func(e *metric.Emitter) error {
		for k, v := range limits {
			e.Emit(limitDesc, v, k)
		}
		return nil
	}, limitDesc))
	preg.MustRegister(preq, pdur, popen, collectorFunc{plimitDesc, func(ch chan<- prometheus.Metric) {
		for k, v := range limits {
			ch <- prometheus.MustNewConstMetric(plimitDesc, prometheus.GaugeValue, v, k)
		}
	}})
	for i, r := range append(nasty, "b", "a", "c") {
		for _, d := range []string{"deny", "allow"} {
			req.With(d, r).Add(uint64(i + 1))
			preq.WithLabelValues(d, r).Add(float64(i + 1))
		}
	}
	for _, v := range []float64{0, .0001, .00011, .3, 1, 29.9, 30, 31, 1e9} {
		dur.With("allow").Observe(v)
		pdur.WithLabelValues("allow").Observe(v)
	}
	dur.With("deny").Observe(.004)
	pdur.WithLabelValues("deny").Observe(.004)
	rev := metric.NewCounterVec("egressd_reversed_total", "Labels not in name order.", "zeta", "alpha")
	prev := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "egressd_reversed_total", Help: "Labels not in name order."}, []string{"zeta", "alpha"})
	reg.MustRegister(rev)
	preg.MustRegister(prev)
	rev.With("z", "a").Inc()
	prev.WithLabelValues("z", "a").Inc()
	open.With().Inc()
	open.With().Inc()
	open.With().Dec()
	popen.Set(1)
}

type collectorFunc struct {
	d *prometheus.Desc
	f func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) { ch <- c.d }
func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.f(ch) }

// TestSameTextAsClientGolang writes the same families as client_golang and
// compares the text byte for byte: sorting, label order, escaping, float
// and bucket formats.
func TestSameTextAsClientGolang(t *testing.T) {
	reg, preg := metric.NewRegistry(), prometheus.NewRegistry()
	fill(t, reg, preg)
	var got, want bytes.Buffer
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if err := metric.WriteText(&got, fams); err != nil {
		t.Fatal(err)
	}
	pfams, err := preg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range pfams {
		if _, err := expfmt.MetricFamilyToText(&want, mf); err != nil {
			t.Fatal(err)
		}
	}
	if got.String() != want.String() {
		t.Errorf("text differs from client_golang's:\n%s", lineDiff(got.String(), want.String()))
	}
}

func lineDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	var b strings.Builder
	for i := range max(len(g), len(w)) {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			b.WriteString("got:  " + gl + "\nwant: " + wl + "\n")
		}
	}
	return b.String()
}

// TestParsedBack reads the exposition back with expfmt's text parser: every
// family with its type, label values identical to those counted.
func TestParsedBack(t *testing.T) {
	reg := metric.NewRegistry()
	fill(t, reg, prometheus.NewRegistry())
	reg.MustRegister(metric.NewGoCollector(), metric.NewProcessCollector())
	mfs, err := metrictest.Gather(reg)
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]dto.MetricType{}
	for _, mf := range mfs {
		types[mf.GetName()] = mf.GetType()
	}
	for name, typ := range map[string]dto.MetricType{
		"egressd_requests_total": dto.MetricType_COUNTER, "egressd_request_duration_seconds": dto.MetricType_HISTOGRAM,
		"egressd_open_connections": dto.MetricType_GAUGE, "egressd_limit": dto.MetricType_GAUGE,
		"go_goroutines": dto.MetricType_GAUGE, "go_threads": dto.MetricType_GAUGE, "go_info": dto.MetricType_GAUGE,
		"go_gc_duration_seconds": dto.MetricType_SUMMARY, "go_memstats_alloc_bytes": dto.MetricType_GAUGE,
		"go_memstats_mallocs_total": dto.MetricType_COUNTER, "go_sched_gomaxprocs_threads": dto.MetricType_GAUGE,
		"go_gc_gogc_percent": dto.MetricType_GAUGE, "go_gc_gomemlimit_bytes": dto.MetricType_GAUGE,
		"process_cpu_seconds_total": dto.MetricType_COUNTER, "process_open_fds": dto.MetricType_GAUGE,
		"process_max_fds": dto.MetricType_GAUGE, "process_resident_memory_bytes": dto.MetricType_GAUGE,
		"process_virtual_memory_bytes": dto.MetricType_GAUGE, "process_virtual_memory_max_bytes": dto.MetricType_GAUGE,
		"process_start_time_seconds": dto.MetricType_GAUGE, "process_network_receive_bytes_total": dto.MetricType_COUNTER,
		"process_network_transmit_bytes_total": dto.MetricType_COUNTER,
	} {
		if got, ok := types[name]; !ok || got != typ {
			t.Errorf("%s: type %v (present %v), want %v", name, got, ok, typ)
		}
	}
	rules := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "egressd_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == "deny" {
				rules[m.GetLabel()[1].GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	for i, r := range nasty {
		if rules[r] != float64(i+1) {
			t.Errorf("rule %q parsed back as %v, want %d (all: %v)", r, rules[r], i+1, rules)
		}
	}
}

// TestConcurrentIncrements counts from many goroutines at once: the sums
// are exact (run with -race).
func TestConcurrentIncrements(t *testing.T) {
	c := metric.NewCounterVec("c_total", "C.", "k")
	g := metric.NewGauge("g", "G.")
	h := metric.NewHistogramVec("h", "H.", []float64{1, 2})
	const workers, each = 32, 2000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				c.With([]string{"a", "b"}[w%2]).Inc() // children made concurrently too
				g.With().Inc()
				h.With().Observe(float64(i % 3))
				if i%2 == 0 {
					g.With().Dec()
				}
			}
		})
	}
	wg.Wait()
	if a, b := c.With("a").Value(), c.With("b").Value(); a+b != workers*each || a != b {
		t.Errorf("counter: a=%d b=%d, want %d each", a, b, workers*each/2)
	}
	if v := g.With().Value(); v != workers*each/2 {
		t.Errorf("gauge = %d, want %d", v, workers*each/2)
	}
	p := point(t, h)
	if p.Count != workers*each || p.Counts[2] != p.Count {
		t.Errorf("histogram count %d, +Inf %d, want %d", p.Count, p.Counts[2], workers*each)
	}
	var sum float64
	for i := range each {
		sum += float64(i % 3)
	}
	if p.Sum != sum*workers {
		t.Errorf("histogram sum %v, want %v", p.Sum, sum*workers)
	}
}

func point(t *testing.T, c metric.Collector) metric.Point {
	t.Helper()
	reg := metric.NewRegistry()
	reg.MustRegister(c)
	fams, err := reg.Gather()
	if err != nil || len(fams) != 1 || len(fams[0].Points) != 1 {
		t.Fatalf("gather: %v, %d families", err, len(fams))
	}
	return fams[0].Points[0]
}

// TestHistogramBounds: a value equal to a bound counts in that bound's
// bucket; buckets are cumulative and end with +Inf.
func TestHistogramBounds(t *testing.T) {
	h := metric.NewHistogramVec("h", "H.", []float64{0.1, 1, 10})
	for _, v := range []float64{0.1, 0.1000001, 1, 10, 10.5, -3} {
		h.With().Observe(v)
	}
	p := point(t, h)
	want := []uint64{2, 4, 5, 6} // le 0.1: -3, 0.1; le 1: 0.1000001, 1; le 10: 10; +Inf: 10.5
	if len(p.Counts) != 4 || !math.IsInf(p.Bounds[3], 1) {
		t.Fatalf("bounds %v counts %v", p.Bounds, p.Counts)
	}
	for i := range want {
		if p.Counts[i] != want[i] {
			t.Errorf("le=%v: %d, want %d (all %v)", p.Bounds[i], p.Counts[i], want[i], p.Counts)
		}
	}
	if p.Count != 6 || math.Abs(p.Sum-(0.1+0.1000001+1+10+10.5-3)) > 1e-9 {
		t.Errorf("count %d sum %v", p.Count, p.Sum)
	}
}

// TestBrokenCollector: a collector's panic or error fails the scrape with
// a 500 and is counted; the process lives, and the next scrape without it
// works.
func TestBrokenCollector(t *testing.T) {
	for name, f := range map[string]func(*metric.Emitter) error{
		"panic": func(*metric.Emitter) error { panic("boom") },
		"error": func(*metric.Emitter) error { return errors.New("boom") },
		"bad labels": func(e *metric.Emitter) error {
			e.Emit(metric.NewDesc("other", "Not described.", metric.GaugeType), 1)
			return nil
		},
	} {
		t.Run(name, func(t *testing.T) {
			reg := metric.NewRegistry()
			d := metric.NewDesc("broken", "Broken.", metric.GaugeType)
			reg.MustRegister(metric.Func(f, d))
			h := metric.Handler(reg, slog.New(slog.DiscardHandler))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
			if rec.Code != 500 || !strings.Contains(rec.Body.String(), "An error has occurred while serving metrics") {
				t.Errorf("scrape: %d %q", rec.Code, rec.Body)
			}
			mfs, _ := reg.Gather() // with the error: the handler's own counter
			for _, f := range mfs {
				if f.Name == "promhttp_metric_handler_errors_total" {
					for _, p := range f.Points {
						if p.Labels[0].Value == "gathering" && p.Value != 1 {
							t.Errorf("gathering errors = %v, want 1", p.Value)
						}
					}
				}
			}
		})
	}
}

// failingWriter is a ResponseWriter whose connection broke.
type failingWriter struct{ httptest.ResponseRecorder }

func (w *failingWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestBrokenWriter(t *testing.T) {
	reg := metric.NewRegistry()
	reg.MustRegister(metric.NewGoCollector())
	h := metric.Handler(reg, slog.New(slog.DiscardHandler))
	w := &failingWriter{*httptest.NewRecorder()}
	h.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "text/plain; version=0.0.4; charset=utf-8" ||
		!strings.Contains(rec.Body.String(), `promhttp_metric_handler_errors_total{cause="encoding"} 1`+"\n") {
		t.Errorf("after a broken writer: %d %q\n%s", rec.Code, rec.Header(), rec.Body)
	}
}

// TestGzip: a scraper accepting gzip gets it, as from promhttp.
func TestGzip(t *testing.T) {
	reg := metric.NewRegistry()
	reg.MustRegister(metric.NewGoCollector())
	srv := httptest.NewServer(metric.Handler(reg, slog.New(slog.DiscardHandler)))
	defer srv.Close()
	resp, err := http.Get(srv.URL) // the transport asks for gzip and inflates
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if !resp.Uncompressed {
		t.Errorf("not gzipped: %v", resp.Header)
	}
	body, _ := io.ReadAll(resp.Body)
	mfs, err := metrictest.Parse(body)
	if err != nil || len(mfs) == 0 || mfs[0].GetName() != "go_gc_duration_seconds" {
		t.Errorf("parse: %v, %d families", err, len(mfs))
	}
}

func TestRegisterTwice(t *testing.T) {
	reg := metric.NewRegistry()
	reg.MustRegister(metric.NewGauge("a", "A."))
	if err := reg.Register(metric.NewGauge("b", "B."), metric.NewCounter("a", "A.")); err == nil {
		t.Error("a registered twice")
	}
	if err := reg.Register(metric.NewGauge("b", "B.")); err != nil {
		t.Errorf("b after a refused batch: %v", err)
	}
	if err := reg.Register(metric.NewCounterVec("c", "C.", "le")); err == nil {
		t.Error("label le taken")
	}
}

// TestNoAllocs: the request path's updates allocate nothing.
func TestNoAllocs(t *testing.T) {
	c := metric.NewCounterVec("c_total", "C.", "decision", "rule", "protocol", "namespace")
	h := metric.NewHistogramVec("h", "H.", buckets, "decision")
	g := metric.NewGauge("g", "G.")
	c.With("allow", "r", "http", "ns")
	h.With("allow")
	rule := strings.Repeat("r", 1) // not a constant
	if n := testing.AllocsPerRun(100, func() {
		c.With("allow", rule, "http", "ns").Inc()
		h.With("allow").Observe(0.003)
		g.With().Inc()
	}); n != 0 {
		t.Errorf("%v allocs per update", n)
	}
}

// TestTwoHandlers: the handlers of one registry share their errors family
// (a hand-over serves the admin socket with a handler of its own).
func TestTwoHandlers(t *testing.T) {
	reg := metric.NewRegistry()
	reg.MustRegister(metric.Func(func(*metric.Emitter) error { return errors.New("boom") }, metric.NewDesc("x", "X.", metric.GaugeType)))
	for range 2 {
		metric.Handler(reg, slog.New(slog.DiscardHandler)).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/metrics", nil))
	}
	fams, _ := reg.Gather()
	for _, f := range fams {
		if f.Name == "promhttp_metric_handler_errors_total" && f.Points[1].Value != 2 {
			t.Errorf("gathering errors = %v, want 2", f.Points[1])
		}
	}
}
