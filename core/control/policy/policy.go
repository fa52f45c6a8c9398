// Package policy holds the built-in transmission control policies
// (docs/control.md): static, loss-adaptive and mean-field. Each is pure
// arithmetic over control.Input: no I/O, no clock, no goroutines.
package policy

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/mediapipe/mediapipe/core/control"
)

// The policy names fec-encoder's policy parameter takes.
const (
	NameStatic       = "static"
	NameLossAdaptive = "loss-adaptive"
	NameMeanField    = "mean-field"
	NamePlugin       = "plugin"
)

// New builds the built-in policy called name; overhead reads the
// encoder's fixed overhead (live), which static applies.
func New(name string, overhead func() float64) (control.Policy, error) {
	switch name {
	case NameStatic:
		return &Static{Overhead: overhead}, nil
	case NameLossAdaptive:
		return NewLossAdaptive(), nil
	case NameMeanField:
		return NewMeanField(), nil
	}
	return nil, fmt.Errorf("policy %q: not a built-in policy (static, loss-adaptive, mean-field)", name)
}

// Static applies one fixed overhead to every stream, leaves pacing as
// udp-sink is configured, and shares the repair budget equally.
type Static struct {
	Overhead func() float64
}

// Decide implements control.Policy.
func (p *Static) Decide(_ context.Context, in *control.Input) (control.Decision, error) {
	o := p.Overhead()
	d := control.Decision{Streams: make(map[uint32]control.StreamDecision, len(in.Streams)),
		Reason: fmt.Sprintf("static overhead %.2f", o)}
	for _, s := range in.Streams {
		d.Streams[s.SSRC] = control.StreamDecision{Overhead: o}
	}
	d.RepairShares = Shares(in.Edges, nil, 0)
	return d, nil
}

// Close implements control.Policy.
func (p *Static) Close() error { return nil }

// Shares divides the repair budget among edges: an edge's share is floor
// (a fraction of an equal share, so no edge starves) plus the rest in
// proportion to its need. No need at all: equal shares.
func Shares(edges []int, need map[int]float64, floor float64) map[int]float64 {
	if len(edges) == 0 {
		return nil
	}
	out := make(map[int]float64, len(edges))
	n := float64(len(edges))
	var total float64
	for _, e := range edges {
		total += max(need[e], 0)
	}
	if total <= 0 || math.IsNaN(total) || math.IsInf(total, 0) {
		for _, e := range edges {
			out[e] = 1 / n
		}
		return out
	}
	base := min(max(floor, 0), 1) / n
	rest := 1 - base*n
	for _, e := range edges {
		out[e] = base + rest*max(need[e], 0)/total
	}
	return out
}

// BasePace is the pacing rate that spreads a burst of burstBytes over
// spreadSeconds, and never below twice the stream's media rate (pacing
// must not hold the stream back); 0 when the stream sent nothing.
func BasePace(s *control.Stream, burstBytes, spreadSeconds float64) float64 {
	if s.MediaBytesPerSecond <= 0 {
		return 0
	}
	return max(2*s.MediaBytesPerSecond, burstBytes/spreadSeconds)
}

func sortFloats(xs []float64) { slices.Sort(xs) }

// bursts remembers each stream's largest burst, fading by a tenth a round:
// an interval without a keyframe must not drop the pace to the media
// rate's floor only for the next keyframe to find it there.
type bursts map[uint32]float64

func (b bursts) keep(s *control.Stream) float64 {
	v := max(float64(s.KeyframeBurstBytes), 0.9*b[s.SSRC])
	b[s.SSRC] = v
	return v
}

// prune forgets the streams not in live.
func (b bursts) prune(live map[uint32]bool) { forget(b, live) }

// forget deletes from a policy's per-stream state (by SSRC) the streams
// not in live: a stream's state goes with it.
func forget[V any](state map[uint32]V, live map[uint32]bool) {
	maps.DeleteFunc(state, func(ssrc uint32, _ V) bool { return !live[ssrc] })
}
