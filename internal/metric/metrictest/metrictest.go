// Package metrictest reads a metric.Registry back through Prometheus's own
// text parser (prometheus/common/expfmt), for tests: what a scrape would
// see, as client_model's families. Only tests import it; the agent links
// nothing of Prometheus's libraries.
package metrictest

import (
	"bytes"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/egressd/egressd/internal/metric"
)

// Gather gathers reg, writes the families in the text format and parses
// them back, sorted by name.
func Gather(reg *metric.Registry) ([]*dto.MetricFamily, error) {
	fams, err := reg.Gather()
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := metric.WriteText(&b, fams); err != nil {
		return nil, err
	}
	return Parse(b.Bytes())
}

// Parse parses text in the exposition format, families sorted by name.
func Parse(text []byte) ([]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.LegacyValidation)
	m, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		return nil, err
	}
	var mfs []*dto.MetricFamily
	for _, mf := range m {
		mfs = append(mfs, mf)
	}
	slices.SortFunc(mfs, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
	return mfs, nil
}
