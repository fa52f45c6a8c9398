// Package worstloss is the policy of the policy-worst-loss example plugin,
// apart from main so it can be tested in process.
package worstloss

import (
	"context"
	"fmt"
	"strings"

	"github.com/mediapipe/mediapipe/core/control"
)

// Policy sets each stream's overhead to Headroom × the fraction lost by its
// worst edge, clamped to Floor … Ceiling; below MinLoss it sends no parity.
// It keeps each stream's pacing as it is and gives every connected edge an
// equal share of the repair budget.
type Policy struct {
	// Headroom covers the loss a report's interval did not see: losses
	// come in bursts, and a group whose losses exceed its parity is
	// repaired (or lost) whole.
	Headroom float64
	// Floor is the least overhead once any edge loses: with groups of a
	// few dozen packets, less parity than this recovers too little.
	Floor float64
	// Ceiling caps the parity: beyond it repair is cheaper.
	Ceiling float64
	// MinLoss is the loss below which no parity is sent: a rare loss costs
	// one repair, parity costs every packet.
	MinLoss float64
}

// Default is the policy the example plugin serves.
var Default = Policy{Headroom: 2, Floor: 0.05, Ceiling: 0.5, MinLoss: 0.001}

// Decide implements control.Policy.
func (p Policy) Decide(_ context.Context, in *control.Input) (control.Decision, error) {
	d := control.Decision{Streams: make(map[uint32]control.StreamDecision, len(in.Streams))}
	var why []string
	for _, s := range in.Streams {
		worst, edge := 0.0, -1
		for _, e := range s.Edges {
			if e.FractionLost > worst {
				worst, edge = e.FractionLost, e.Edge
			}
		}
		overhead := 0.0
		if worst >= p.MinLoss {
			overhead = min(max(p.Headroom*worst, p.Floor), p.Ceiling)
		}
		d.Streams[s.SSRC] = control.StreamDecision{Overhead: overhead, PaceBytesPerSecond: s.Current.PaceBytesPerSecond}
		if edge >= 0 {
			why = append(why, fmt.Sprintf("%s: worst loss %.1f%% (edge %d)", s.Stream, 100*worst, edge))
		} else {
			why = append(why, s.Stream+": no loss")
		}
	}
	if in.RepairBudget > 0 && len(in.Edges) > 0 {
		d.RepairShares = make(map[int]float64, len(in.Edges))
		for _, e := range in.Edges {
			d.RepairShares[e] = 1 / float64(len(in.Edges))
		}
	}
	d.Reason = strings.Join(why, "; ")
	return d, nil
}

// Close implements control.Policy.
func (Policy) Close() error { return nil }
