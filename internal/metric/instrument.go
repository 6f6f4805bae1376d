package metric

import (
	"math"
	"sort"
	"sync"
	"sync/atomic"
)

// Counter is a count that only goes up. Its methods are safe for concurrent
// use, lock-free and allocate nothing.
type Counter struct{ n atomic.Uint64 }

// Inc adds 1.
func (c *Counter) Inc() { c.n.Add(1) }

// Add adds n.
func (c *Counter) Add(n uint64) { c.n.Add(n) }

// Value is the count.
func (c *Counter) Value() uint64 { return c.n.Load() }

// Gauge is a value that goes up and down. Its methods are safe for
// concurrent use, lock-free and allocate nothing.
type Gauge struct{ n atomic.Int64 }

// Inc adds 1.
func (g *Gauge) Inc() { g.n.Add(1) }

// Dec subtracts 1.
func (g *Gauge) Dec() { g.n.Add(-1) }

// Set sets the value.
func (g *Gauge) Set(v int64) { g.n.Store(v) }

// Value is the value.
func (g *Gauge) Value() int64 { return g.n.Load() }

// Histogram counts observations in fixed buckets. Observe is safe for
// concurrent use, lock-free and allocates nothing.
type Histogram struct {
	bounds []float64       // upper bounds, ascending, without +Inf
	counts []atomic.Uint64 // per bucket (not cumulative), +Inf last
	sum    atomic.Uint64   // float64 bits
}

func newHistogram(bounds []float64) *Histogram {
	return &Histogram{bounds: bounds, counts: make([]atomic.Uint64, len(bounds)+1)}
}

// Observe counts v in the first bucket whose upper bound is at least v.
func (h *Histogram) Observe(v float64) {
	h.counts[sort.SearchFloat64s(h.bounds, v)].Add(1)
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// point is h's state: cumulative counts, +Inf last.
func (h *Histogram) point() Point {
	p := Point{Bounds: append(h.bounds[:len(h.bounds):len(h.bounds)], math.Inf(1)), Counts: make([]uint64, len(h.counts))}
	var n uint64
	for i := range h.counts {
		n += h.counts[i].Load()
		p.Counts[i] = n
	}
	p.Count = n
	p.Sum = math.Float64frombits(h.sum.Load())
	return p
}

// NewCounter is a counter family without labels: register the family,
// count on its one Counter, With().
func NewCounter(name, help string) *CounterVec { return NewCounterVec(name, help) }

// NewGauge is a gauge family without labels: register the family, set
// its one Gauge, With().
func NewGauge(name, help string) *GaugeVec { return NewGaugeVec(name, help) }

// CounterVec is a counter family: a Counter per set of label values.
type CounterVec struct{ *vec[Counter] }

// NewCounterVec is a counter family with labels.
func NewCounterVec(name, help string, labels ...string) *CounterVec {
	return &CounterVec{newVec(&Desc{name, help, CounterType, labels}, func() *Counter { return new(Counter) },
		func(c *Counter) Point { return Point{Value: float64(c.Value())} })}
}

// GaugeVec is a gauge family: a Gauge per set of label values.
type GaugeVec struct{ *vec[Gauge] }

// NewGaugeVec is a gauge family with labels.
func NewGaugeVec(name, help string, labels ...string) *GaugeVec {
	return &GaugeVec{newVec(&Desc{name, help, GaugeType, labels}, func() *Gauge { return new(Gauge) },
		func(g *Gauge) Point { return Point{Value: float64(g.Value())} })}
}

// HistogramVec is a histogram family: a Histogram per set of label values,
// all with the same buckets.
type HistogramVec struct{ *vec[Histogram] }

// NewHistogramVec is a histogram family with the buckets' upper bounds
// (ascending; +Inf is added) and labels.
func NewHistogramVec(name, help string, bounds []float64, labels ...string) *HistogramVec {
	if !sort.Float64sAreSorted(bounds) {
		panic("metric: histogram " + name + ": bounds not ascending")
	}
	bounds = append([]float64(nil), bounds...)
	return &HistogramVec{newVec(&Desc{name, help, HistogramType, labels}, func() *Histogram { return newHistogram(bounds) },
		(*Histogram).point)}
}

// vec is a family of children of type M, one per set of label values; a
// family without labels has one child, shown from the start. A child with
// labels shows from its first With.
type vec[M any] struct {
	desc     *Desc
	newChild func() *M
	point    func(*M) Point
	single   *M // no labels
	mu       sync.RWMutex
	children map[string]*child[M]
}

type child[M any] struct {
	values []string
	m      *M
}

func newVec[M any](d *Desc, newChild func() *M, point func(*M) Point) *vec[M] {
	v := &vec[M]{desc: d, newChild: newChild, point: point, children: make(map[string]*child[M])}
	if len(d.Labels) == 0 {
		v.single = newChild()
	}
	return v
}

// With is the child of the label values, in the family's labels' order,
// made at its first use. Keep it when the values repeat: With looks it
// up, without allocating once made (up to 256 bytes of values).
func (v *vec[M]) With(values ...string) *M {
	if len(values) != len(v.desc.Labels) {
		panic("metric: " + v.desc.Name + ": wrong number of label values")
	}
	if v.single != nil {
		return v.single
	}
	var buf [256]byte
	key := buf[:0]
	for _, s := range values {
		key = append(append(key, s...), 0xff) // 0xff is never in UTF-8
	}
	v.mu.RLock()
	c := v.children[string(key)]
	v.mu.RUnlock()
	if c != nil {
		return c.m
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if c := v.children[string(key)]; c != nil {
		return c.m
	}
	c = &child[M]{values: append([]string(nil), values...), m: v.newChild()}
	v.children[string(key)] = c
	return c.m
}

// Describe is the family's Desc.
func (v *vec[M]) Describe() []*Desc { return []*Desc{v.desc} }

// Collect emits every child's point.
func (v *vec[M]) Collect(e *Emitter) error {
	if v.single != nil {
		e.add(v.desc, v.point(v.single), nil)
		return nil
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	for _, c := range v.children {
		e.add(v.desc, v.point(c.m), c.values)
	}
	return nil
}
