// Package metric is egressd's Prometheus metrics: a registry (no globals),
// counters, gauges and histograms updated lock-free, label vectors whose
// children are resolved once, collect-time callbacks for values read at
// scrape time, and the text exposition format 0.0.4 served on /metrics,
// byte for byte what client_golang's promhttp wrote for the same families.
// The Go runtime's and the process's families (go_*, process_*) are here
// too, with client_golang's names and help.
//
// Why not client_golang: the agent's resident memory at idle is mostly the
// pages of its binary, and client_golang brings protobuf, procfs and
// client_model (~0.9 MB of code and data, more of pclntab) and procfs's
// initialisers compile regexps at every start. What egressd needs of it is
// this package's few hundred lines.
//
// Traps: a collect callback runs at every scrape, on the scraping
// goroutine, and must not block; its panic or error fails that scrape
// (500), never the process. A histogram's _sum may lag its buckets by the
// observations under way while it is read; _count is always the +Inf
// bucket.
//
// Files: metric.go (Registry, Desc, Collector, Func, Emitter), instrument.go
// (Counter, Gauge, Histogram and their vectors), text.go (the exposition
// format, Handler), runtime.go (the go_* families), process.go (the
// process_* families).
package metric

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Type is a family's type, as its # TYPE line says it.
type Type string

// The types of family.
const (
	CounterType   Type = "counter"
	GaugeType     Type = "gauge"
	HistogramType Type = "histogram"
	SummaryType   Type = "summary"
)

// Desc describes a family: its name, help, type and label names.
type Desc struct {
	Name   string
	Help   string
	Type   Type
	Labels []string
}

// NewDesc describes the family name of type t with help and labels.
func NewDesc(name, help string, t Type, labels ...string) *Desc {
	return &Desc{Name: name, Help: help, Type: t, Labels: labels}
}

// Collector is what a Registry holds: one or more families, whose points it
// emits at each scrape.
type Collector interface {
	Describe() []*Desc
	Collect(e *Emitter) error
}

// Func is a Collector of the families descs whose points f emits at each
// scrape (const metrics: values read from elsewhere).
func Func(f func(e *Emitter) error, descs ...*Desc) Collector { return funcCollector{f, descs} }

type funcCollector struct {
	f     func(*Emitter) error
	descs []*Desc
}

func (c funcCollector) Describe() []*Desc        { return c.descs }
func (c funcCollector) Collect(e *Emitter) error { return c.f(e) }

// Registry holds collectors, and gathers their families at each scrape.
// The zero value is not usable: use NewRegistry. Register may be called
// while scrapes run.
type Registry struct {
	mu         sync.Mutex
	collectors []Collector
	names      map[string]bool

	handlerErrors *CounterVec // promhttp_metric_handler_errors_total (Handler)
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{names: make(map[string]bool)} }

// Register adds cs, unless a family's name or labels are invalid or a name
// is already registered (then none is added).
func (r *Registry) Register(cs ...Collector) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := make(map[string]bool)
	for _, c := range cs {
		for _, d := range c.Describe() {
			if err := d.check(); err != nil {
				return err
			}
			if r.names[d.Name] || seen[d.Name] {
				return fmt.Errorf("metric %s registered twice", d.Name)
			}
			seen[d.Name] = true
		}
	}
	for n := range seen {
		r.names[n] = true
	}
	r.collectors = append(r.collectors, cs...)
	return nil
}

// MustRegister is Register, panicking on its error (names fixed in code).
func (r *Registry) MustRegister(cs ...Collector) {
	if err := r.Register(cs...); err != nil {
		panic(err)
	}
}

func (d *Desc) check() error {
	if !validName(d.Name, false) {
		return fmt.Errorf("metric name %q invalid", d.Name)
	}
	switch d.Type {
	case CounterType, GaugeType, HistogramType, SummaryType:
	default:
		return fmt.Errorf("metric %s: type %q unknown", d.Name, d.Type)
	}
	for _, l := range d.Labels {
		if !validName(l, true) || l == "le" || l == "quantile" {
			return fmt.Errorf("metric %s: label name %q invalid", d.Name, l)
		}
	}
	return nil
}

// validName reports whether s is a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)
// or a label name (no colons, no leading __).
func validName(s string, label bool) bool {
	if s == "" || label && strings.HasPrefix(s, "__") {
		return false
	}
	for i, c := range s {
		ok := c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == ':' && !label || i > 0 && c >= '0' && c <= '9'
		if !ok {
			return false
		}
	}
	return true
}

// Family is a family's points, as gathered.
type Family struct {
	*Desc
	Points []Point
}

// Point is one series of a family: its labels (names and values sorted by
// name) and value; for a histogram the bucket bounds with their cumulative
// counts, and the sum and count; for a summary the quantiles, sum and count.
type Point struct {
	Labels    []Label
	Value     float64
	Bounds    []float64 // histogram: upper bounds, +Inf last
	Counts    []uint64  // histogram: cumulative count of each bound
	Quantiles [][2]float64
	Sum       float64
	Count     uint64
}

// Label is a label's name and value.
type Label struct{ Name, Value string }

// Emitter takes the points a collector emits for the families it described.
type Emitter struct {
	fams map[*Desc]*Family
	err  error
}

// Emit adds a counter's or gauge's point to d's family, with its label
// values in d.Labels' order.
func (e *Emitter) Emit(d *Desc, v float64, labelValues ...string) {
	e.add(d, Point{Value: v}, labelValues)
}

// Summary adds a summary's point to d's family: quantiles as {quantile,
// value}, sorted by quantile.
func (e *Emitter) Summary(d *Desc, quantiles [][2]float64, sum float64, count uint64, labelValues ...string) {
	e.add(d, Point{Quantiles: quantiles, Sum: sum, Count: count}, labelValues)
}

func (e *Emitter) add(d *Desc, p Point, values []string) {
	f := e.fams[d]
	switch {
	case f == nil:
		e.fail(fmt.Errorf("metric %s: not described by its collector", d.Name))
		return
	case len(values) != len(d.Labels):
		e.fail(fmt.Errorf("metric %s: %d label values for %d labels", d.Name, len(values), len(d.Labels)))
		return
	}
	p.Labels = labelPairs(d.Labels, values)
	f.Points = append(f.Points, p)
}

func (e *Emitter) fail(err error) {
	if e.err == nil {
		e.err = err
	}
}

// labelPairs pairs names and values, sorted by name.
func labelPairs(names, values []string) []Label {
	if len(names) == 0 {
		return nil
	}
	ls := make([]Label, len(names))
	for i := range names {
		ls[i] = Label{names[i], values[i]}
	}
	slices.SortFunc(ls, func(a, b Label) int { return strings.Compare(a.Name, b.Name) })
	return ls
}

// Gather collects every family, sorted by name, each family's points
// sorted by label values; families without points are left out. A
// collector's error or panic is returned (with what the others gathered);
// so is a point emitted twice.
func (r *Registry) Gather() ([]Family, error) {
	r.mu.Lock()
	cs := slices.Clone(r.collectors)
	r.mu.Unlock()
	var errs []error
	var fams []Family
	for _, c := range cs {
		e := &Emitter{fams: make(map[*Desc]*Family)}
		for _, d := range c.Describe() {
			e.fams[d] = &Family{Desc: d}
		}
		if err := collect(c, e); err != nil {
			errs = append(errs, err)
		}
		if e.err != nil {
			errs = append(errs, e.err)
		}
		for _, d := range c.Describe() {
			if f := e.fams[d]; len(f.Points) > 0 {
				fams = append(fams, *f)
			}
		}
	}
	slices.SortFunc(fams, func(a, b Family) int { return strings.Compare(a.Name, b.Name) })
	for _, f := range fams {
		slices.SortStableFunc(f.Points, comparePoints)
		for i := 1; i < len(f.Points); i++ {
			if comparePoints(f.Points[i-1], f.Points[i]) == 0 {
				errs = append(errs, fmt.Errorf("metric %s: series %v emitted twice", f.Name, f.Points[i].Labels))
				break
			}
		}
	}
	return fams, errors.Join(errs...)
}

// collect runs c.Collect, its panic returned as an error.
func collect(c Collector, e *Emitter) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("collector of %v panicked: %v", names(c.Describe()), p)
		}
	}()
	return c.Collect(e)
}

func comparePoints(a, b Point) int {
	for i := range min(len(a.Labels), len(b.Labels)) {
		if c := strings.Compare(a.Labels[i].Value, b.Labels[i].Value); c != 0 {
			return c
		}
	}
	return len(a.Labels) - len(b.Labels)
}

func names(ds []*Desc) []string {
	var ns []string
	for _, d := range ds {
		ns = append(ns, d.Name)
	}
	return ns
}
