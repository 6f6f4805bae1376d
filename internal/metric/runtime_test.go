package metric_test

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/egressd/egressd/internal/metric"
	"github.com/egressd/egressd/internal/metric/metrictest"
)

// TestSameFamiliesAsClientGolang: the go_* and process_* families are those
// of client_golang's default Go and process collectors, with the same
// types, help and labels (dashboards and alerts know them by these).
func TestSameFamiliesAsClientGolang(t *testing.T) {
	reg, preg := metric.NewRegistry(), prometheus.NewRegistry()
	reg.MustRegister(metric.NewGoCollector(), metric.NewProcessCollector())
	preg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	got, err := metrictest.Gather(reg)
	if err != nil {
		t.Fatal(err)
	}
	want, err := preg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	shape := func(name, help, typ string, labels []string) string {
		return name + " " + typ + " {" + strings.Join(labels, ",") + "} " + help
	}
	gotShapes := map[string]string{}
	for _, mf := range got {
		var labels []string
		for _, l := range mf.GetMetric()[0].GetLabel() {
			if l.GetName() != "version" { // go_info's value differs by nothing but is checked below
				labels = append(labels, l.GetName())
			}
		}
		gotShapes[mf.GetName()] = shape(mf.GetName(), mf.GetHelp(), mf.GetType().String(), labels)
	}
	for _, mf := range want {
		var labels []string
		for _, l := range mf.GetMetric()[0].GetLabel() {
			if l.GetName() != "version" {
				labels = append(labels, l.GetName())
			}
		}
		w := shape(mf.GetName(), mf.GetHelp(), mf.GetType().String(), labels)
		if g := gotShapes[mf.GetName()]; g != w {
			t.Errorf("family differs:\n got: %s\nwant: %s", g, w)
		}
		delete(gotShapes, mf.GetName())
	}
	for _, g := range gotShapes {
		t.Errorf("family client_golang has not: %s", g)
	}
	for _, mf := range got {
		if mf.GetName() == "go_info" && mf.GetMetric()[0].GetLabel()[0].GetValue() == "" {
			t.Error("go_info without a version")
		}
	}
}

// TestProcessValues: the process_* values are this process's, in the
// units client_golang's were.
func TestProcessValues(t *testing.T) {
	reg, preg := metric.NewRegistry(), prometheus.NewRegistry()
	reg.MustRegister(metric.NewProcessCollector())
	preg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	got, err := metrictest.Gather(reg)
	if err != nil {
		t.Fatal(err)
	}
	want, err := preg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]float64{}
	for _, mf := range got {
		m := mf.GetMetric()[0]
		values[mf.GetName()] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
	}
	for _, mf := range want {
		m := mf.GetMetric()[0]
		w, g := m.GetGauge().GetValue()+m.GetCounter().GetValue(), values[mf.GetName()]
		exact := map[string]bool{"process_max_fds": true, "process_virtual_memory_max_bytes": true, "process_start_time_seconds": true}
		if exact[mf.GetName()] && g != w || !exact[mf.GetName()] && (g < w/2-1 || g > 2*w+1) {
			t.Errorf("%s = %v, client_golang says %v", mf.GetName(), g, w)
		}
	}
}
