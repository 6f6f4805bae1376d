package l7

import (
	"github.com/egressd/egressd/internal/metric"
	"github.com/egressd/egressd/l7/internal/limit"
	"github.com/egressd/egressd/l7/internal/metrics"
)

// newMetrics builds the proxy's collectors (l7/internal/metrics) and
// registers them with reg (nil: none).
func newMetrics(reg *metric.Registry, l *limit.Limiter, audit bool) (*metrics.Set, error) {
	return metrics.New(reg, metrics.Options{Limits: l.Collector(), Mode: ModeName(audit),
		ShedReasons: limit.ShedReasons[:], CutReasons: cutReasons,
		StreamsRefusedReasons: []string{limit.RefusedStreamsPerClient, limit.RefusedStreamsMemory}})
}
