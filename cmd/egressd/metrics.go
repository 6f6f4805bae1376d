package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/egressd/egressd/redirect"
	"github.com/egressd/egressd/rules"
)

// rulesCollector exposes the rules in force and the reload outcomes of
// each set: the global rules (namespace ""), each --cgroup-rules cgroup's
// and each Kubernetes namespace's own.
type rulesCollector struct{ sets func() []ruleSetStats }

// ruleSetStats is one rule set's figures.
type ruleSetStats struct {
	namespace string // "": the global rules
	rules     int    // the set's own rules in force
	stats     rules.ReloadStats
}

// reloaderStats is the ruleSetStats of a Reloader.
func reloaderStats(namespace string, r *rules.Reloader) ruleSetStats {
	return ruleSetStats{namespace: namespace, rules: r.Current().Len(), stats: r.Stats()}
}

var (
	rulesDesc = prometheus.NewDesc("egressd_rules",
		"EgressRules in force, by namespace (the scope: a pod namespace, a --cgroup-rules cgroup; empty for the global rules).", []string{"namespace"}, nil)
	reloadsDesc = prometheus.NewDesc("egressd_rules_reloads_total",
		"New versions of the rules read since start, by namespace and result: applied, or refused (the previous rules stayed in force).",
		[]string{"namespace", "result"}, nil)
	reloadFailedDesc = prometheus.NewDesc("egressd_rules_last_reload_failed",
		"1 if the latest version of a namespace's rules read was refused.", []string{"namespace"}, nil)
)

func (c rulesCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- rulesDesc
	ch <- reloadsDesc
	ch <- reloadFailedDesc
}

func (c rulesCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.sets() {
		ns := s.namespace
		ch <- prometheus.MustNewConstMetric(rulesDesc, prometheus.GaugeValue, float64(s.rules), ns)
		ch <- prometheus.MustNewConstMetric(reloadsDesc, prometheus.CounterValue, float64(s.stats.Reloads), ns, "applied")
		ch <- prometheus.MustNewConstMetric(reloadsDesc, prometheus.CounterValue, float64(s.stats.Failures), ns, "refused")
		failed := 0.0
		if s.stats.LastFailed {
			failed = 1
		}
		ch <- prometheus.MustNewConstMetric(reloadFailedDesc, prometheus.GaugeValue, failed, ns)
	}
}

// redirectCollector exposes the BPF programs' per-CPU counters, summed.
// They count since the maps were first pinned, across agent restarts.
type redirectCollector struct{ r *redirect.Redirector }

var (
	redirectDesc = prometheus.NewDesc("egressd_redirect_events_total",
		"Decisions of the BPF programs since their maps were first pinned, by event (sock_refused_KIND: socket creations refused).",
		[]string{"event"}, nil)
	lookupsDesc = prometheus.NewDesc("egressd_redirect_lookups_failed_total",
		"This agent's original-destination lookups that found nothing, by reason: miss (not redirected by egressd), error (the map could not be read).",
		[]string{"reason"}, nil)
	exemptDesc = prometheus.NewDesc("egressd_exempt_cgroups",
		"Cgroups whose processes the BPF programs leave alone, by reason: flag (--exempt-cgroup), self (the agent's own cgroup), namespace, label, gateway, agent (pods on Kubernetes). A cgroup exempt for two reasons counts under both.",
		[]string{"reason"}, nil)
	guardDesc = prometheus.NewDesc("egressd_guard",
		"1 while the optional guard runs in the attached cgroups, 0 where it could not load (the start-up log says why): packet_sockets (refuses packet sockets and families without inet hooks: Linux 6.0, the bpf LSM, CAP_PERFMON), source_routes (drops source-routed packets; needs nothing more than the other hooks).",
		[]string{"guard"}, nil)
)

func (c redirectCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- redirectDesc
	ch <- lookupsDesc
	ch <- exemptDesc
	ch <- guardDesc
}

func (c redirectCollector) Collect(ch chan<- prometheus.Metric) {
	g := c.r.Guards()
	for name, err := range map[string]error{"packet_sockets": g.PacketSockets, "source_routes": g.SourceRoutes} {
		on := 1.0
		if err != nil {
			on = 0
		}
		ch <- prometheus.MustNewConstMetric(guardDesc, prometheus.GaugeValue, on, name)
	}
	st, err := c.r.Stats()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(redirectDesc, err)
		return
	}
	for _, e := range []struct {
		name string
		n    uint64
	}{
		{"redirected", st.Redirected},
		{"skipped_own", st.SkippedOwn},
		{"skipped_loopback", st.SkippedLoopback},
		{"skipped_proxy", st.SkippedProxy},
		{"skipped_excluded", st.SkippedExcluded},
		{"skipped_dns", st.SkippedDNS},
		{"skipped_exempt", st.SkippedExempt},
		{"udp_dns", st.UDPDNS},
		{"udp_allowed", st.UDPAllowed},
		{"udp_refused", st.UDPRefused},
		{"unspecified_refused", st.Unspecified},
		{"fail_closed", st.FailClosed},
		{"tracked", st.Tracked},
		{"track_failed", st.TrackFailed},
		{"untracked", st.Untracked},
		{"source_routed", st.SourceRouted},
	} {
		ch <- prometheus.MustNewConstMetric(redirectDesc, prometheus.CounterValue, float64(e.n), e.name)
	}
	for kind, n := range st.SocketsRefused {
		ch <- prometheus.MustNewConstMetric(redirectDesc, prometheus.CounterValue, float64(n), "sock_refused_"+kind)
	}
	for why, n := range c.r.ExemptCounts() {
		ch <- prometheus.MustNewConstMetric(exemptDesc, prometheus.GaugeValue, float64(n), why.String())
	}
	ch <- prometheus.MustNewConstMetric(lookupsDesc, prometheus.CounterValue, float64(st.LookupMisses), "miss")
	ch <- prometheus.MustNewConstMetric(lookupsDesc, prometheus.CounterValue, float64(st.LookupErrors), "error")
}
