package l7

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Decisions, as logged and as the "decision" metric label.
const (
	decisionAllow   = "allow"   // matched a rule and forwarded (whatever the upstream answered)
	decisionDeny    = "deny"    // no rule allows the host and port: 403
	decisionInvalid = "invalid" // refused before matching: malformed request
)

// metrics are the proxy's Prometheus collectors, labelled by rule, never by
// requested host (unbounded).
type metrics struct {
	requests       *prometheus.CounterVec   // decision, rule, protocol
	duration       *prometheus.HistogramVec // decision
	openConns      prometheus.Gauge
	upstreamErrors *prometheus.CounterVec // kind
	origMisses     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "egressd_requests_total",
			Help: "Requests decided by the proxy, by decision (allow, deny, invalid), matching rule and protocol.",
		}, []string{"decision", "rule", "protocol"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "egressd_request_duration_seconds",
			Help:    "Time from reading a request head to the end of its response, by decision.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"decision"}),
		openConns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "egressd_open_connections",
			Help: "Client connections currently open on the proxy.",
		}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "egressd_upstream_errors_total",
			Help: "Upstream failures by kind (dns, connect, tls, timeout, protocol, egress_proxy, io).",
		}, []string{"kind"}),
		origMisses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "egressd_original_destination_misses_total",
			Help: "Accepted connections with no known original destination (closed at once).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.openConns, m.upstreamErrors, m.origMisses} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("l7: register metrics: %w", err)
		}
	}
	return m, nil
}
