package host

import (
	"testing"

	"github.com/mediapipe/mediapipe/core"
)

func TestCounterSum(t *testing.T) {
	m := core.NewMetrics()
	a, b := m.Stage("edge", 1, "udp-source"), m.Stage("edge", 2, "rtp-reorder")
	a.Drop("junk").Add(2)
	b.Drop("gap_skipped").Add(3)
	b.Drop("late").Add(5)
	b.Counter("repaired").Add(7)
	b.Gauge("streams").Set(11) // not a counter: never summed
	rt := &Runtime{Metrics: m}
	cases := []struct {
		family string
		labels map[string]string
		want   float64
	}{
		{"mediapipe_stage_drops_total", nil, 10},
		{"mediapipe_stage_drops_total", map[string]string{"stage": "rtp-reorder"}, 8},
		{"mediapipe_stage_drops_total", map[string]string{"stage": "rtp-reorder", "reason": "late"}, 5},
		{"mediapipe_stage_drops_total", map[string]string{"stage": "netsim"}, 0},
		{"mediapipe_stage_drops_total", map[string]string{"event": "repaired"}, 0},
		{"mediapipe_stage_repaired_packets_total", nil, 7},
		{"mediapipe_stage_repaired_packets_total", map[string]string{"stage": "udp-source"}, 0},
		{"mediapipe_stage_streams", nil, 0},
		{"no_such_family", nil, 0},
	}
	for _, c := range cases {
		if got := rt.CounterSum(c.family, c.labels); got != c.want {
			t.Errorf("CounterSum(%s, %v) = %v, want %v", c.family, c.labels, got, c.want)
		}
	}
}
