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

var redirectDesc = prometheus.NewDesc("egressd_redirect_events_total",
	"Decisions of the BPF connect/sendmsg programs since their maps were first pinned, by event.",
	[]string{"event"}, nil)

func (c redirectCollector) Describe(ch chan<- *prometheus.Desc) { ch <- redirectDesc }

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
		{"skipped_mark", st.SkippedMark},
		{"skipped_loopback", st.SkippedLoopback},
		{"skipped_proxy", st.SkippedProxy},
		{"skipped_excluded", st.SkippedExcluded},
		{"skipped_dns", st.SkippedDNS},
		{"skipped_other", st.SkippedOther},
		{"udp_allowed", st.UDPAllowed},
		{"udp_refused", st.UDPRefused},
		{"fail_closed", st.FailClosed},
		{"tracked", st.Tracked},
		{"track_failed", st.TrackFailed},
	} {
		ch <- prometheus.MustNewConstMetric(redirectDesc, prometheus.CounterValue, float64(e.n), e.name)
	}
}
