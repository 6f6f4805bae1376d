package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/egressd/egressd/internal/metric"
	"github.com/egressd/egressd/internal/metric/metrictest"
	"github.com/egressd/egressd/rules"
)

// TestMetricsEndpoint scrapes the admin endpoint of a registry built as
// the agent's (newRegistry) and parses it with expfmt: the rules families
// with a scope whose name holds quotes, backslashes and a newline, the
// go_* and process_* families; then a collector failing makes the scrape
// a 500, counted, as promhttp's was.
func TestMetricsEndpoint(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	ns := "/sys/fs/cgroup/a\"b\\c\nd"
	reg := newRegistry(func() []ruleSetStats {
		return []ruleSetStats{{namespace: "", rules: 3, stats: rules.ReloadStats{Reloads: 2}},
			{namespace: ns, rules: 1, stats: rules.ReloadStats{Failures: 1, LastFailed: true}}}
	})
	var fail error
	failDesc := metric.NewDesc("egressd_test_failing", "Fails when told.", metric.GaugeType)
	reg.MustRegister(metric.Func(func(e *metric.Emitter) error {
		e.Emit(failDesc, 1)
		return fail
	}, failDesc))
	a, err := startAdmin("127.0.0.1:0", adminHandler(reg, &readiness{}, log), log)
	if err != nil {
		t.Fatal(err)
	}
	defer a.shutdown(context.Background())
	url := "http://" + a.addr.String() + "/metrics"

	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/plain; version=0.0.4; charset=utf-8" {
		t.Fatalf("/metrics: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	mfs, err := metrictest.Parse(body)
	if err != nil {
		t.Fatalf("expfmt: %v\n%s", err, body)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var key []string
			for _, l := range m.GetLabel() {
				key = append(key, l.GetName()+"="+l.GetValue())
			}
			got[mf.GetName()+"{"+strings.Join(key, ",")+"}"] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	for k, v := range map[string]float64{
		"egressd_rules{namespace=}": 3, "egressd_rules{namespace=" + ns + "}": 1,
		"egressd_rules_reloads_total{namespace=,result=applied}":           2,
		"egressd_rules_reloads_total{namespace=" + ns + ",result=refused}": 1,
		"egressd_rules_last_reload_failed{namespace=" + ns + "}":           1,
		"promhttp_metric_handler_errors_total{cause=gathering}":            0,
		"egressd_test_failing{}":                                           1,
	} {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%q = %v (present %v), want %v", k, g, ok, v)
		}
	}
	for _, name := range []string{"go_goroutines{}", "go_memstats_heap_alloc_bytes{}", "process_resident_memory_bytes{}", "process_open_fds{}"} {
		if got[name] <= 0 {
			t.Errorf("%s = %v", name, got[name])
		}
	}

	fail = errors.New("the BPF maps could not be read")
	resp, err = http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 500 || !strings.Contains(string(body), "the BPF maps could not be read") {
		t.Errorf("failing collector: %d %q", resp.StatusCode, body)
	}
	fail = nil
	if _, body := get(t, url); !strings.Contains(body, `promhttp_metric_handler_errors_total{cause="gathering"} 1`+"\n") {
		t.Errorf("gathering error not counted:\n%s", body)
	}
}
