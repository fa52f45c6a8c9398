package worstloss

import (
	"context"
	"testing"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/control"
)

func edge(id int, loss float64) control.EdgeReport {
	return control.EdgeReport{Edge: id, EdgeStream: core.EdgeStream{FractionLost: loss}}
}

// TestDecide: the overhead follows the worst edge's loss within the floor
// and ceiling, pacing is kept, and shares are equal.
func TestDecide(t *testing.T) {
	for _, c := range []struct {
		name   string
		losses []float64
		want   float64
	}{
		{"no edges", nil, 0},
		{"clean", []float64{0, 0}, 0},
		{"below min loss", []float64{0.0005}, 0},
		{"floor", []float64{0.01, 0.002}, 0.05},
		{"twice the worst", []float64{0.01, 0.08, 0.03}, 0.16},
		{"ceiling", []float64{0.4}, 0.5},
	} {
		s := control.Stream{Stream: "live/a", SSRC: 7, Current: control.StreamDecision{PaceBytesPerSecond: 1e6}}
		for i, l := range c.losses {
			s.Edges = append(s.Edges, edge(i, l))
		}
		in := &control.Input{Streams: []control.Stream{s}, RepairBudget: 3000, Edges: []int{0, 1, 2}}
		d, err := Default.Decide(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		got := d.Streams[7]
		if diff := got.Overhead - c.want; diff > 1e-12 || diff < -1e-12 || got.PaceBytesPerSecond != 1e6 {
			t.Errorf("%s: %+v, want overhead %v and the current pace", c.name, got, c.want)
		}
		if len(d.RepairShares) != 3 || d.RepairShares[2] != 1.0/3 {
			t.Errorf("%s: shares %v, want a third each", c.name, d.RepairShares)
		}
	}
	d, _ := Default.Decide(context.Background(), &control.Input{Edges: []int{1}})
	if d.RepairShares != nil {
		t.Errorf("no budget: shares %v, want none", d.RepairShares)
	}
}
