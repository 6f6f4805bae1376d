package metric

import (
	"fmt"
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"sync"
	"time"
)

// The go_* families, named and explained as client_golang's default Go
// collector did; the memstats ones read from runtime/metrics (no
// stop-the-world), as it does.
var (
	goroutinesDesc = &Desc{"go_goroutines", "Number of goroutines that currently exist.", GaugeType, nil}
	threadsDesc    = &Desc{"go_threads", "Number of OS threads created.", GaugeType, nil}
	gcDesc         = &Desc{"go_gc_duration_seconds", "A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles.", SummaryType, nil}
	lastGCDesc     = &Desc{"go_memstats_last_gc_time_seconds", "Number of seconds since 1970 of last garbage collection.", GaugeType, nil}
	goInfoDesc     = &Desc{"go_info", "Information about the Go environment.", GaugeType, []string{"version"}}
)

// memStat is a go_memstats_* family: the sum of runtime/metrics samples.
type memStat struct {
	desc    *Desc
	samples []string
}

func ms(name, help string, t Type, samples ...string) memStat {
	return memStat{&Desc{"go_memstats_" + name, help, t, nil}, samples}
}

var memStats = []memStat{
	ms("alloc_bytes", "Number of bytes allocated in heap and currently in use. Equals to /memory/classes/heap/objects:bytes.", GaugeType, "/memory/classes/heap/objects:bytes"),
	ms("alloc_bytes_total", "Total number of bytes allocated in heap until now, even if released already. Equals to /gc/heap/allocs:bytes.", CounterType, "/gc/heap/allocs:bytes"),
	ms("sys_bytes", "Number of bytes obtained from system. Equals to /memory/classes/total:byte.", GaugeType, "/memory/classes/total:bytes"),
	ms("mallocs_total", "Total number of heap objects allocated, both live and gc-ed. Semantically a counter version for go_memstats_heap_objects gauge. Equals to /gc/heap/allocs:objects + /gc/heap/tiny/allocs:objects.", CounterType, "/gc/heap/allocs:objects", "/gc/heap/tiny/allocs:objects"),
	ms("frees_total", "Total number of heap objects frees. Equals to /gc/heap/frees:objects + /gc/heap/tiny/allocs:objects.", CounterType, "/gc/heap/frees:objects", "/gc/heap/tiny/allocs:objects"),
	ms("heap_alloc_bytes", "Number of heap bytes allocated and currently in use, same as go_memstats_alloc_bytes. Equals to /memory/classes/heap/objects:bytes.", GaugeType, "/memory/classes/heap/objects:bytes"),
	ms("heap_sys_bytes", "Number of heap bytes obtained from system. Equals to /memory/classes/heap/objects:bytes + /memory/classes/heap/unused:bytes + /memory/classes/heap/released:bytes + /memory/classes/heap/free:bytes.", GaugeType, "/memory/classes/heap/objects:bytes", "/memory/classes/heap/unused:bytes", "/memory/classes/heap/released:bytes", "/memory/classes/heap/free:bytes"),
	ms("heap_idle_bytes", "Number of heap bytes waiting to be used. Equals to /memory/classes/heap/released:bytes + /memory/classes/heap/free:bytes.", GaugeType, "/memory/classes/heap/released:bytes", "/memory/classes/heap/free:bytes"),
	ms("heap_inuse_bytes", "Number of heap bytes that are in use. Equals to /memory/classes/heap/objects:bytes + /memory/classes/heap/unused:bytes", GaugeType, "/memory/classes/heap/objects:bytes", "/memory/classes/heap/unused:bytes"),
	ms("heap_released_bytes", "Number of heap bytes released to OS. Equals to /memory/classes/heap/released:bytes.", GaugeType, "/memory/classes/heap/released:bytes"),
	ms("heap_objects", "Number of currently allocated objects. Equals to /gc/heap/objects:objects.", GaugeType, "/gc/heap/objects:objects"),
	ms("stack_inuse_bytes", "Number of bytes obtained from system for stack allocator in non-CGO environments. Equals to /memory/classes/heap/stacks:bytes.", GaugeType, "/memory/classes/heap/stacks:bytes"),
	ms("stack_sys_bytes", "Number of bytes obtained from system for stack allocator. Equals to /memory/classes/heap/stacks:bytes + /memory/classes/os-stacks:bytes.", GaugeType, "/memory/classes/heap/stacks:bytes", "/memory/classes/os-stacks:bytes"),
	ms("mspan_inuse_bytes", "Number of bytes in use by mspan structures. Equals to /memory/classes/metadata/mspan/inuse:bytes.", GaugeType, "/memory/classes/metadata/mspan/inuse:bytes"),
	ms("mspan_sys_bytes", "Number of bytes used for mspan structures obtained from system. Equals to /memory/classes/metadata/mspan/inuse:bytes + /memory/classes/metadata/mspan/free:bytes.", GaugeType, "/memory/classes/metadata/mspan/inuse:bytes", "/memory/classes/metadata/mspan/free:bytes"),
	ms("mcache_inuse_bytes", "Number of bytes in use by mcache structures. Equals to /memory/classes/metadata/mcache/inuse:bytes.", GaugeType, "/memory/classes/metadata/mcache/inuse:bytes"),
	ms("mcache_sys_bytes", "Number of bytes used for mcache structures obtained from system. Equals to /memory/classes/metadata/mcache/inuse:bytes + /memory/classes/metadata/mcache/free:bytes.", GaugeType, "/memory/classes/metadata/mcache/inuse:bytes", "/memory/classes/metadata/mcache/free:bytes"),
	ms("buck_hash_sys_bytes", "Number of bytes used by the profiling bucket hash table. Equals to /memory/classes/profiling/buckets:bytes.", GaugeType, "/memory/classes/profiling/buckets:bytes"),
	ms("gc_sys_bytes", "Number of bytes used for garbage collection system metadata. Equals to /memory/classes/metadata/other:bytes.", GaugeType, "/memory/classes/metadata/other:bytes"),
	ms("other_sys_bytes", "Number of bytes used for other system allocations. Equals to /memory/classes/other:bytes.", GaugeType, "/memory/classes/other:bytes"),
	ms("next_gc_bytes", "Number of heap bytes when next garbage collection will take place. Equals to /gc/heap/goal:bytes.", GaugeType, "/gc/heap/goal:bytes"),
}

// rmGauges are the runtime/metrics families client_golang exposes by
// default, help from the runtime's description as it words it.
var rmGauges = []struct{ name, sample string }{
	{"go_gc_gogc_percent", "/gc/gogc:percent"},
	{"go_gc_gomemlimit_bytes", "/gc/gomemlimit:bytes"},
	{"go_sched_gomaxprocs_threads", "/sched/gomaxprocs:threads"},
}

// NewGoCollector is the go_* families of client_golang's default Go
// collector: goroutines, threads, GC pauses, the memstats, go_info, GOGC,
// the memory limit and GOMAXPROCS.
func NewGoCollector() Collector {
	c := &goCollector{index: make(map[string]int)}
	c.descs = []*Desc{goroutinesDesc, threadsDesc, gcDesc, lastGCDesc, goInfoDesc}
	add := func(s string) {
		if _, ok := c.index[s]; !ok {
			c.index[s] = len(c.samples)
			c.samples = append(c.samples, rtmetrics.Sample{Name: s})
		}
	}
	for _, m := range memStats {
		c.descs = append(c.descs, m.desc)
		for _, s := range m.samples {
			add(s)
		}
	}
	help := make(map[string]string)
	for _, d := range rtmetrics.All() {
		help[d.Name] = d.Description
	}
	for _, g := range rmGauges {
		if h, ok := help[g.sample]; ok {
			d := &Desc{g.name, fmt.Sprintf("%s Sourced from %s.", h, g.sample), GaugeType, nil}
			c.rm = append(c.rm, memStat{d, []string{g.sample}})
			c.descs = append(c.descs, d)
			add(g.sample)
		}
	}
	return c
}

type goCollector struct {
	descs   []*Desc
	rm      []memStat // rmGauges' (those this runtime has)
	mu      sync.Mutex
	samples []rtmetrics.Sample
	index   map[string]int
}

func (c *goCollector) Describe() []*Desc { return c.descs }

func (c *goCollector) Collect(e *Emitter) error {
	e.Emit(goroutinesDesc, float64(runtime.NumGoroutine()))
	n, _ := runtime.ThreadCreateProfile(nil)
	e.Emit(threadsDesc, float64(n))
	var st debug.GCStats
	st.PauseQuantiles = make([]time.Duration, 5)
	debug.ReadGCStats(&st)
	var qs [][2]float64
	for i, q := range st.PauseQuantiles {
		qs = append(qs, [2]float64{float64(i) / 4, q.Seconds()})
	}
	e.Summary(gcDesc, qs, st.PauseTotal.Seconds(), uint64(st.NumGC))
	e.Emit(lastGCDesc, float64(st.LastGC.UnixNano())/1e9)
	e.Emit(goInfoDesc, 1, runtime.Version())

	c.mu.Lock()
	defer c.mu.Unlock()
	rtmetrics.Read(c.samples)
	for _, m := range append(memStats[:len(memStats):len(memStats)], c.rm...) {
		var sum uint64 // every sample read is a uint64
		for _, s := range m.samples {
			if v := c.samples[c.index[s]].Value; v.Kind() == rtmetrics.KindUint64 {
				sum += v.Uint64()
			}
		}
		e.Emit(m.desc, float64(sum))
	}
	return nil
}
