package main

import (
	"github.com/egressd/egressd/internal/metric"
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
	rulesDesc = metric.NewDesc("egressd_rules",
		"EgressRules in force, by namespace (the scope: a pod namespace, a --cgroup-rules cgroup; empty for the global rules).",
		metric.GaugeType, "namespace")
	reloadsDesc = metric.NewDesc("egressd_rules_reloads_total",
		"New versions of the rules read since start, by namespace and result: applied, or refused (the previous rules stayed in force).",
		metric.CounterType, "namespace", "result")
	reloadFailedDesc = metric.NewDesc("egressd_rules_last_reload_failed",
		"1 if the latest version of a namespace's rules read was refused.",
		metric.GaugeType, "namespace")
)

func (c rulesCollector) Describe() []*metric.Desc {
	return []*metric.Desc{rulesDesc, reloadsDesc, reloadFailedDesc}
}

func (c rulesCollector) Collect(e *metric.Emitter) error {
	for _, s := range c.sets() {
		ns := s.namespace
		e.Emit(rulesDesc, float64(s.rules), ns)
		e.Emit(reloadsDesc, float64(s.stats.Reloads), ns, "applied")
		e.Emit(reloadsDesc, float64(s.stats.Failures), ns, "refused")
		failed := 0.0
		if s.stats.LastFailed {
			failed = 1
		}
		e.Emit(reloadFailedDesc, failed, ns)
	}
	return nil
}

// redirectCollector exposes the BPF programs' per-CPU counters, summed.
// They count since the maps were first pinned, across agent restarts.
type redirectCollector struct{ r *redirect.Redirector }

var (
	redirectDesc = metric.NewDesc("egressd_redirect_events_total",
		"Decisions of the BPF programs since their maps were first pinned, by event (sock_refused_KIND: socket creations refused).",
		metric.CounterType, "event")
	lookupsDesc = metric.NewDesc("egressd_redirect_lookups_failed_total",
		"This agent's original-destination lookups that found nothing, by reason: miss (not redirected by egressd), error (the map could not be read).",
		metric.CounterType, "reason")
	exemptDesc = metric.NewDesc("egressd_exempt_cgroups",
		"Cgroups whose processes the BPF programs leave alone, by reason: flag (--exempt-cgroup), self (the agent's own cgroup), namespace, label, gateway, agent (pods on Kubernetes). A cgroup exempt for two reasons counts under both.",
		metric.GaugeType, "reason")
	guardDesc = metric.NewDesc("egressd_guard",
		"1 while the optional guard runs in the attached cgroups, 0 where it could not load (the start-up log says why): packet_sockets (refuses packet sockets and families without inet hooks: Linux 6.0, the bpf LSM, CAP_PERFMON), source_routes (drops source-routed packets; needs nothing more than the other hooks).",
		metric.GaugeType, "guard")
)

func (c redirectCollector) Describe() []*metric.Desc {
	return []*metric.Desc{redirectDesc, lookupsDesc, exemptDesc, guardDesc}
}

func (c redirectCollector) Collect(e *metric.Emitter) error {
	g := c.r.Guards()
	for name, err := range map[string]error{"packet_sockets": g.PacketSockets, "source_routes": g.SourceRoutes} {
		on := 1.0
		if err != nil {
			on = 0
		}
		e.Emit(guardDesc, on, name)
	}
	st, err := c.r.Stats()
	if err != nil {
		return err
	}
	for _, ev := range []struct {
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
		e.Emit(redirectDesc, float64(ev.n), ev.name)
	}
	for kind, n := range st.SocketsRefused {
		e.Emit(redirectDesc, float64(n), "sock_refused_"+kind)
	}
	for why, n := range c.r.ExemptCounts() {
		e.Emit(exemptDesc, float64(n), why.String())
	}
	e.Emit(lookupsDesc, float64(st.LookupMisses), "miss")
	e.Emit(lookupsDesc, float64(st.LookupErrors), "error")
	return nil
}
