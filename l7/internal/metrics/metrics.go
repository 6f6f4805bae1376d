// Package metrics is the catalogue of l7's Prometheus collectors: every
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

	"github.com/prometheus/client_golang/prometheus"
)

// Options are what the collectors need from the proxy.
type Options struct {
	Limits                prometheus.Collector // egressd_limit (l7/internal/limit)
	Mode                  string               // "enforce" or "audit": egressd_mode's label
	ShedReasons           []string             // egressd_connections_shed_total's reasons
	CutReasons            []string             // egressd_connections_cut_total's reasons
	StreamsRefusedReasons []string             // egressd_streams_refused_total's reasons
}

// Set is the proxy's Prometheus collectors, labelled by rule, never by
// requested host (unbounded).
type Set struct {
	Requests       *prometheus.CounterVec   // decision, rule, protocol
	Duration       *prometheus.HistogramVec // decision
	OpenConns      prometheus.Gauge
	UpstreamErrors *prometheus.CounterVec // kind
	OrigMisses     prometheus.Counter
	Shed           *prometheus.CounterVec // reason
	StreamsRefused *prometheus.CounterVec // reason (l7/streamlimit.go)
	Limits         prometheus.Collector   // the limits in force (l7/internal/limit)
	AddrRefused    *prometheus.CounterVec // reason code (l7/internal/addrpolicy)
	Cut            *prometheus.CounterVec // reason (l7/redecide.go)
	EgressRetries  prometheus.Counter     // l7/internal/dialer
	Mode           prometheus.Collector   // egressd_mode{mode=enforce|audit} 1 (l7/audit.go)
}

// New builds the collectors and registers them with reg (nil: kept but
// not registered).
func New(reg prometheus.Registerer, o Options) (*Set, error) {
	m := &Set{
		Requests: counterVec("egressd_requests_total",
			"Requests decided by the proxy, by decision (allow, deny, invalid, would-deny), matching rule, protocol and namespace (the scope whose rules decided: a pod's namespace, a --cgroup-rules cgroup; empty for the global rules).",
			"decision", "rule", "protocol", "namespace"),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "egressd_request_duration_seconds",
			Help:    "Time from reading a request head to the end of its response, by decision.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"decision"}),
		OpenConns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "egressd_open_connections",
			Help: "Client connections currently open on the proxy.",
		}),
		UpstreamErrors: counterVec("egressd_upstream_errors_total",
			"Upstream failures by kind (dns, connect, tls, timeout, protocol, egress_proxy, io, address_refused).",
			"kind"),
		OrigMisses: prometheus.NewCounter(prometheus.CounterOpts{Name: "egressd_original_destination_misses_total",
			Help: "Accepted connections with no known original destination (closed at once)."}),
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
		EgressRetries: prometheus.NewCounter(prometheus.CounterOpts{Name: "egressd_egress_proxy_retries_total",
			Help: "New connections to the egress proxy tried again because the previous one failed before the proxy answered (refused, reset, closed: a gateway replica going away)."}),
		Limits: o.Limits,
		Mode:   modeGauge(o.Mode),
	}
	for _, r := range o.ShedReasons {
		m.Shed.WithLabelValues(r) // every reason shows, at 0 until it happens
	}
	for _, r := range o.CutReasons {
		m.Cut.WithLabelValues(r)
	}
	for _, r := range o.StreamsRefusedReasons {
		m.StreamsRefused.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.Requests, m.Duration, m.OpenConns, m.UpstreamErrors, m.OrigMisses, m.Shed, m.StreamsRefused, m.Limits, m.AddrRefused, m.Cut, m.EgressRetries, m.Mode} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("l7: register metrics: %w", err)
		}
	}
	return m, nil
}

// counterVec is a counter of name, help and labels.
func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
}

// modeDesc is egressd_mode: 1 for the mode in force.
var modeDesc = prometheus.NewDesc("egressd_mode",
	"The proxy's mode: 1 for the one in force (enforce: requests no rule allows get 403; audit: they are forwarded and counted as would-deny).",
	[]string{"mode"}, nil)

type modeGauge string

func (g modeGauge) Describe(ch chan<- *prometheus.Desc) { ch <- modeDesc }

func (g modeGauge) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(modeDesc, prometheus.GaugeValue, 1, string(g))
}

// RequestCache holds the collectors of one decision, rule, protocol and
// namespace, so that the requests of a keep-alive connection, which mostly
// repeat them, skip the label lookups. The zero value is empty.
type RequestCache struct {
	decision, rule, protocol, namespace string
	requests                            prometheus.Counter
	duration                            prometheus.Observer
}

// ObserveRequest counts a request in egressd_requests_total and its
// duration in egressd_request_duration_seconds, through c's collectors
// when the labels repeat c's (else looked up, and kept in c).
func (m *Set) ObserveRequest(c *RequestCache, decision, rule, protocol, namespace string, d time.Duration) {
	if c.requests == nil || c.decision != decision || c.rule != rule || c.protocol != protocol || c.namespace != namespace {
		*c = RequestCache{decision: decision, rule: rule, protocol: protocol, namespace: namespace,
			requests: m.Requests.WithLabelValues(decision, rule, protocol, namespace),
			duration: m.Duration.WithLabelValues(decision)}
	}
	c.requests.Inc()
	c.duration.Observe(d.Seconds())
}
