package host

import (
	"slices"

	dto "github.com/prometheus/client_model/go"

	"github.com/mediapipe/mediapipe/internal/metricread"
)

// CounterSum adds up the counters of family whose labels include every
// pair of labels (nil or empty matches every series). It reads one Gather
// of rt.Metrics; a series that is not a counter adds nothing, and a family
// no stage has counted yet sums to 0. It returns -1 when the registry
// cannot be gathered, which no real count can be.
func (rt *Runtime) CounterSum(family string, labels map[string]string) float64 {
	fams, err := rt.Metrics.Registry.Gather()
	if err != nil {
		return -1
	}
	fams = slices.DeleteFunc(fams, func(f *dto.MetricFamily) bool { return f.GetType() != dto.MetricType_COUNTER })
	return metricread.SumFamilies(fams, family, labels)
}
