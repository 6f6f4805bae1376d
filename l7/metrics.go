package l7

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/egressd/egressd/l7/internal/limit"
	"github.com/egressd/egressd/l7/internal/metrics"
)

// Decisions, as logged and as the "decision" metric label.
const (
	decisionAllow   = "allow"   // matched a rule and forwarded (whatever the upstream answered)
	decisionDeny    = "deny"    // no rule allows the host and port: 403
	decisionInvalid = "invalid" // refused before matching: malformed request
	// decisionWouldDeny: no rule allows it, forwarded in audit mode (audit.go)
	decisionWouldDeny = "would-deny"
)

// newMetrics builds the proxy's collectors (l7/internal/metrics) and
// registers them with reg (nil: none).
func newMetrics(reg prometheus.Registerer, l *limit.Limiter, audit bool) (*metrics.Set, error) {
	return metrics.New(reg, metrics.Options{Limits: l.Collector(), Mode: ModeName(audit),
		ShedReasons: limit.ShedReasons[:], CutReasons: cutReasons,
		StreamsRefusedReasons: []string{limit.RefusedStreamsPerClient, limit.RefusedStreamsMemory}})
}
