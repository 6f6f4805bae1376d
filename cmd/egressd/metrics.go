package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/egressd/egressd/redirect"
	"github.com/egressd/egressd/rules"
)

// rulesCollector exposes the rules in force and the reload outcomes.
type rulesCollector struct{ r *rules.Reloader }

var (
	rulesDesc = prometheus.NewDesc("egressd_rules",
		"EgressRules in force.", nil, nil)
	reloadsDesc = prometheus.NewDesc("egressd_rules_reloads_total",
		"New versions of the rule files read since start, by result: applied, or refused (the previous rules stayed in force).",
		[]string{"result"}, nil)
	reloadFailedDesc = prometheus.NewDesc("egressd_rules_last_reload_failed",
		"1 if the latest version of the rule files read was refused.", nil, nil)
)

func (c rulesCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- rulesDesc
	ch <- reloadsDesc
	ch <- reloadFailedDesc
}

func (c rulesCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.r.Stats()
	ch <- prometheus.MustNewConstMetric(rulesDesc, prometheus.GaugeValue, float64(c.r.Current().Len()))
	ch <- prometheus.MustNewConstMetric(reloadsDesc, prometheus.CounterValue, float64(st.Reloads), "applied")
	ch <- prometheus.MustNewConstMetric(reloadsDesc, prometheus.CounterValue, float64(st.Failures), "refused")
	failed := 0.0
	if st.LastFailed {
		failed = 1
	}
	ch <- prometheus.MustNewConstMetric(reloadFailedDesc, prometheus.GaugeValue, failed)
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
)

func (c redirectCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- redirectDesc
	ch <- lookupsDesc
}

func (c redirectCollector) Collect(ch chan<- prometheus.Metric) {
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
		{"udp_dns", st.UDPDNS},
		{"udp_allowed", st.UDPAllowed},
		{"udp_refused", st.UDPRefused},
		{"unspecified_refused", st.Unspecified},
		{"fail_closed", st.FailClosed},
		{"tracked", st.Tracked},
		{"track_failed", st.TrackFailed},
		{"untracked", st.Untracked},
	} {
		ch <- prometheus.MustNewConstMetric(redirectDesc, prometheus.CounterValue, float64(e.n), e.name)
	}
	for kind, n := range st.SocketsRefused {
		ch <- prometheus.MustNewConstMetric(redirectDesc, prometheus.CounterValue, float64(n), "sock_refused_"+kind)
	}
	ch <- prometheus.MustNewConstMetric(lookupsDesc, prometheus.CounterValue, float64(st.LookupMisses), "miss")
	ch <- prometheus.MustNewConstMetric(lookupsDesc, prometheus.CounterValue, float64(st.LookupErrors), "error")
}
