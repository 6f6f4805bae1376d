package limit

import (
	"math"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/egressd/egressd/internal/metric"
)

// shedLogEvery is the least time between two log lines of one shed reason.
const shedLogEvery = 5 * time.Second

type shedLogState struct {
	last   atomic.Int64 // UnixNano of the last line
	unseen atomic.Int64 // shed since the last line
}

// Shed logs a connection shed for reason, unless a line for the same
// reason was written less than shedLogEvery ago: the next line then
// carries the count since the last.
func (l *Limiter) Shed(reason string, client netip.AddrPort, now time.Time) {
	for i, r := range ShedReasons {
		if r != reason {
			continue
		}
		st := &l.shedLog[i]
		n := st.unseen.Add(1)
		last := st.last.Load()
		if now.UnixNano()-last < int64(shedLogEvery) || !st.last.CompareAndSwap(last, now.UnixNano()) {
			return
		}
		st.unseen.Add(-n)
		l.log.Warn("shedding new connections: limit reached", "reason", reason, "client", client.Addr(),
			"shed", n, "max_conns", l.maxConns, "max_conns_per_client", l.perClient,
			"memory_shed_bytes", l.memShed.Load())
	}
}

// Collector exports the limits in force: the connection limits (0:
// none) and the runtime's memory limit with the level above which new
// connections are shed (0: no limit).
func (l *Limiter) Collector() metric.Collector { return metric.Func(l.collect, limitDesc) }

var limitDesc = metric.NewDesc("egressd_limit",
	"Limits in force: max_conns, max_conns_per_client, max_streams_per_client (0: none), memory_bytes (the Go runtime's memory limit, GOMEMLIMIT) and memory_shed_bytes (new connections are shed above it); 0: none.",
	metric.GaugeType, "limit")

func (l *Limiter) collect(e *metric.Emitter) error {
	l.readMemory(time.Now())
	memLimit := l.memLimit.Load()
	if memLimit == math.MaxInt64 {
		memLimit = 0
	}
	for _, v := range []struct {
		name string
		v    int64
	}{{"max_conns", int64(max(l.maxConns, 0))}, {"max_conns_per_client", int64(max(l.perClient, 0))},
		{"max_streams_per_client", int64(max(l.perClientStreams, 0))},
		{"memory_bytes", memLimit}, {"memory_shed_bytes", l.memShed.Load()}} {
		e.Emit(limitDesc, float64(v.v), v.name)
	}
	return nil
}
