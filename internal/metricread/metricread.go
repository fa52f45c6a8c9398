// Package metricread reads Prometheus samples back, from a registry's Gather or
// a parsed /metrics scrape alike: for tests, bench and the runtime's own sums.
package metricread

import dto "github.com/prometheus/client_model/go"

// SumFamilies adds up the counter, gauge and untyped samples of family whose
// labels include every pair of labels (nil or empty matches every series),
// from a registry's Gather or a parsed /metrics scrape alike.
func SumFamilies(fams []*dto.MetricFamily, family string, labels map[string]string) float64 {
	var sum float64
	for _, f := range fams {
		if f.GetName() != family {
			continue
		}
		for _, m := range f.GetMetric() {
			if HasLabels(m.GetLabel(), labels) {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
			}
		}
	}
	return sum
}

// HasLabels reports whether pairs holds every name=value of want; as in
// Prometheus, a label a series lacks has the value "".
func HasLabels(pairs []*dto.LabelPair, want map[string]string) bool {
	for k, v := range want {
		got := ""
		for _, l := range pairs {
			if l.GetName() == k {
				got = l.GetValue()
				break
			}
		}
		if got != v {
			return false
		}
	}
	return true
}
