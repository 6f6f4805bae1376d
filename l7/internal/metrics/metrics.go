// Package metrics is the catalogue of l7's Prometheus metrics: every
// metric's name, help and labels in one place, so that their cardinality
// can be reviewed at a glance — labels name decisions, rules, protocols,
// namespaces and bounded reasons, never a requested host — and registered
// once per registry (no package-global collectors). The proxy updates them
// where things happen; every reason label shows at 0 until it happens.
//
// Why a package of its own: the metric names are a contract with dashboards
// and alerts, apart from the code paths that count.
//
// Files: metrics.go (Set, Options, New; the egressd_mode gauge; a request's
// observation, its collectors cached per connection: RequestCache).
package metrics

import (
	"fmt"
	"time"

	"github.com/egressd/egressd/internal/metric"
)

// Options are what the collectors need from the proxy.
type Options struct {
	Limits                metric.Collector // egressd_limit (l7/internal/limit)
	Mode                  string           // "enforce" or "audit": egressd_mode's label
	ShedReasons           []string         // egressd_connections_shed_total's reasons
	CutReasons            []string         // egressd_connections_cut_total's reasons
	StreamsRefusedReasons []string         // egressd_streams_refused_total's reasons
}

// Set is the proxy's Prometheus collectors, labelled by rule, never by
// requested host (unbounded).
type Set struct {
	Requests       *metric.CounterVec   // decision, rule, protocol, namespace
	Duration       *metric.HistogramVec // decision
	OpenConns      *metric.Gauge
	UpstreamErrors *metric.CounterVec // kind
	OrigMisses     *metric.Counter
	Shed           *metric.CounterVec // reason
	StreamsRefused *metric.CounterVec // reason (l7/streamlimit.go)
	Limits         metric.Collector   // the limits in force (l7/internal/limit)
	AddrRefused    *metric.CounterVec // reason code (l7/internal/addrpolicy)
	Cut            *metric.CounterVec // reason (l7/redecide.go)
	EgressRetries  *metric.Counter    // l7/internal/dialer
	Mode           metric.Collector   // egressd_mode{mode=enforce|audit} 1 (l7/audit.go)
}

// New builds the collectors and registers them with reg (nil: kept but
// not registered).
func New(reg *metric.Registry, o Options) (*Set, error) {
	openConns := metric.NewGauge("egressd_open_connections", "Client connections currently open on the proxy.")
	origMisses := metric.NewCounter("egressd_original_destination_misses_total",
		"Accepted connections with no known original destination (closed at once).")
	egressRetries := metric.NewCounter("egressd_egress_proxy_retries_total",
		"New connections to the egress proxy tried again because the previous one failed before the proxy answered (refused, reset, closed: a gateway replica going away).")
	m := &Set{
		Requests: counterVec("egressd_requests_total",
			"Requests decided by the proxy, by decision (allow, deny, invalid, would-deny), matching rule, protocol and namespace (the scope whose rules decided: a pod's namespace, a --cgroup-rules cgroup; empty for the global rules).",
			"decision", "rule", "protocol", "namespace"),
		Duration: metric.NewHistogramVec("egressd_request_duration_seconds",
			"Time from reading a request head to the end of its response, by decision.",
			[]float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
			"decision"),
		OpenConns: openConns.With(),
		UpstreamErrors: counterVec("egressd_upstream_errors_total",
			"Upstream failures by kind (dns, connect, tls, timeout, protocol, egress_proxy, io, address_refused).",
			"kind"),
		OrigMisses: origMisses.With(),
		Shed: counterVec("egressd_connections_shed_total",
			"Client connections closed at accept, unread, by reason (max_conns, max_conns_per_client, memory).",
			"reason"),
		StreamsRefused: counterVec("egressd_streams_refused_total",
			"h2c streams answered 503 (gRPC: UNAVAILABLE) without being forwarded, by reason (max_streams_per_client, memory).",
			"reason"),
		AddrRefused: counterVec("egressd_upstream_addresses_refused_total",
			"Upstream dials refused by the address policy, by reason (loopback, unspecified, link_local, multicast, broadcast, metadata, node_address, not_original).",
			"reason"),
		Cut: counterVec("egressd_connections_cut_total",
			"Spliced connections (TLS passthrough, CONNECT tunnels, 101 upgrades) egressd closed, by reason (rules_changed: no rule allows them any more; max_lifetime).",
			"reason"),
		EgressRetries: egressRetries.With(),
		Limits:        o.Limits,
		Mode:          modeGauge(o.Mode),
	}
	for _, r := range o.ShedReasons {
		m.Shed.With(r) // every reason shows, at 0 until it happens
	}
	for _, r := range o.CutReasons {
		m.Cut.With(r)
	}
	for _, r := range o.StreamsRefusedReasons {
		m.StreamsRefused.With(r)
	}
	if reg == nil {
		return m, nil
	}
	if err := reg.Register(m.Requests, m.Duration, openConns, m.UpstreamErrors, origMisses, m.Shed, m.StreamsRefused,
		m.Limits, m.AddrRefused, m.Cut, egressRetries, m.Mode); err != nil {
		return nil, fmt.Errorf("l7: register metrics: %w", err)
	}
	return m, nil
}

// counterVec is a counter of name, help and labels.
func counterVec(name, help string, labels ...string) *metric.CounterVec {
	return metric.NewCounterVec(name, help, labels...)
}

// modeDesc is egressd_mode: 1 for the mode in force.
var modeDesc = metric.NewDesc("egressd_mode",
	"The proxy's mode: 1 for the one in force (enforce: requests no rule allows get 403; audit: they are forwarded and counted as would-deny).",
	metric.GaugeType, "mode")

func modeGauge(mode string) metric.Collector {
	return metric.Func(func(e *metric.Emitter) error {
		e.Emit(modeDesc, 1, mode)
		return nil
	}, modeDesc)
}

// RequestCache holds the collectors of one decision, rule, protocol and
// namespace, so that the requests of a keep-alive connection, which mostly
// repeat them, skip the label lookups. The zero value is empty.
type RequestCache struct {
	decision, rule, protocol, namespace string
	requests                            *metric.Counter
	duration                            *metric.Histogram
}

// ObserveRequest counts a request in egressd_requests_total and its
// duration in egressd_request_duration_seconds, through c's collectors
// when the labels repeat c's (else looked up, and kept in c).
func (m *Set) ObserveRequest(c *RequestCache, decision, rule, protocol, namespace string, d time.Duration) {
	if c.requests == nil || c.decision != decision || c.rule != rule || c.protocol != protocol || c.namespace != namespace {
		*c = RequestCache{decision: decision, rule: rule, protocol: protocol, namespace: namespace,
			requests: m.Requests.With(decision, rule, protocol, namespace),
			duration: m.Duration.With(decision)}
	}
	c.requests.Inc()
	c.duration.Observe(d.Seconds())
}
