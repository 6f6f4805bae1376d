package l7

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/egressd/egressd/l7/internal/limit"
)

// Decisions, as logged and as the "decision" metric label.
const (
	decisionAllow   = "allow"   // matched a rule and forwarded (whatever the upstream answered)
	decisionDeny    = "deny"    // no rule allows the host and port: 403
	decisionInvalid = "invalid" // refused before matching: malformed request
	// decisionWouldDeny: no rule allows it, forwarded in audit mode (audit.go)
	decisionWouldDeny = "would-deny"
)

// metrics are the proxy's Prometheus collectors, labelled by rule, never by
// requested host (unbounded).
type metrics struct {
	requests       *prometheus.CounterVec   // decision, rule, protocol
	duration       *prometheus.HistogramVec // decision
	openConns      prometheus.Gauge
	upstreamErrors *prometheus.CounterVec // kind
	origMisses     prometheus.Counter
	shed           *prometheus.CounterVec // reason
	streamsRefused *prometheus.CounterVec // reason (streamlimit.go)
	limits         prometheus.Collector   // the limits in force (limit.go)
	addrRefused    *prometheus.CounterVec // reason code (l7/internal/addrpolicy)
	cut            *prometheus.CounterVec // reason (redecide.go)
	egressRetries  prometheus.Counter     // egressproxy.go
	mode           prometheus.Collector   // egressd_mode{mode=enforce|audit} 1 (audit.go)
}

func newMetrics(reg prometheus.Registerer, l *limit.Limiter, audit bool) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "egressd_requests_total",
			Help: "Requests decided by the proxy, by decision (allow, deny, invalid, would-deny), matching rule, protocol and namespace (the scope whose rules decided: a pod's namespace, a --cgroup-rules cgroup; empty for the global rules).",
		}, []string{"decision", "rule", "protocol", "namespace"}),
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
			Help: "Upstream failures by kind (dns, connect, tls, timeout, protocol, egress_proxy, io, address_refused).",
		}, []string{"kind"}),
		origMisses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "egressd_original_destination_misses_total",
			Help: "Accepted connections with no known original destination (closed at once).",
		}),
		shed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "egressd_connections_shed_total",
			Help: "Client connections closed at accept, unread, by reason (max_conns, max_conns_per_client, memory).",
		}, []string{"reason"}),
		streamsRefused: newStreamsRefused(),
		addrRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "egressd_upstream_addresses_refused_total",
			Help: "Upstream dials refused by the address policy, by reason (loopback, unspecified, link_local, multicast, broadcast, metadata, node_address, not_original).",
		}, []string{"reason"}),
		cut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "egressd_connections_cut_total",
			Help: "Spliced connections (TLS passthrough, CONNECT tunnels, 101 upgrades) egressd closed, by reason (rules_changed: no rule allows them any more; max_lifetime).",
		}, []string{"reason"}),
		egressRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "egressd_egress_proxy_retries_total",
			Help: "New connections to the egress proxy tried again because the previous one failed before the proxy answered (refused, reset, closed: a gateway replica going away).",
		}),
		limits: l.Collector(),
		mode:   modeGauge(audit),
	}
	for _, r := range limit.ShedReasons {
		m.shed.WithLabelValues(r) // every reason shows, at 0 until it happens
	}
	for _, r := range cutReasons {
		m.cut.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.openConns, m.upstreamErrors, m.origMisses, m.shed, m.streamsRefused, m.limits, m.addrRefused, m.cut, m.egressRetries, m.mode} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("l7: register metrics: %w", err)
		}
	}
	return m, nil
}
