package policy

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/mediapipe/mediapipe/core/control"
)

// LossAdaptive sets each stream's overhead from a percentile of its edges'
// loss before repair: the least parity per group that leaves a residual
// loss (Residual, the binomial tail) of at most Target, which repair then
// covers. It raises at once, lowers only when a lower count has been
// enough for Hold ticks in a row, and turns parity off after ZeroReports
// fresh reports of no loss (no edges: no parity).
type LossAdaptive struct {
	Percentile  float64 // of the edges' fraction lost: 0.9
	Target      float64 // residual loss per edge left to repair: 0.01
	Hold        int     // ticks a lower count must be enough before lowering
	ZeroReports int     // fresh reports of no loss before parity goes off
	Spread      float64 // seconds a stream's largest burst is paced over

	state  map[uint32]*laState
	bursts bursts
}

type laState struct {
	m      int       // parity per group chosen now
	lower  int       // ticks in a row a lower count was enough
	zeros  int       // fresh reports in a row of no loss
	lastAt time.Time // the newest report seen
}

// NewLossAdaptive returns the policy with its defaults.
func NewLossAdaptive() *LossAdaptive {
	return &LossAdaptive{Percentile: 0.9, Target: 0.01, Hold: 3, ZeroReports: 3, Spread: 0.005,
		state: map[uint32]*laState{}, bursts: bursts{}}
}

// Decide implements control.Policy.
func (p *LossAdaptive) Decide(_ context.Context, in *control.Input) (control.Decision, error) {
	d := control.Decision{Streams: make(map[uint32]control.StreamDecision, len(in.Streams))}
	var why []string
	need := map[int]float64{}
	live := make(map[uint32]bool, len(in.Streams))
	for i := range in.Streams {
		s := &in.Streams[i]
		live[s.SSRC] = true
		st := p.state[s.SSRC]
		if st == nil {
			st = &laState{m: ParityOf(s.Current.Overhead, GroupSize(s))}
			p.state[s.SSRC] = st
		}
		k := GroupSize(s)
		loss := make([]float64, 0, len(s.Edges))
		var newest time.Time
		for _, e := range s.Edges {
			loss = append(loss, e.FractionLost)
			need[e.Edge] += e.FractionLost * s.MediaBytesPerSecond
			if e.At.After(newest) {
				newest = e.At
			}
		}
		pct := Percentile(loss, p.Percentile)
		if newest.After(st.lastAt) {
			st.lastAt = newest
			if pct == 0 {
				st.zeros++
			} else {
				st.zeros = 0
			}
		}
		want, reason := st.m, ""
		switch {
		case len(s.Edges) == 0:
			want, reason = 0, "no edge reports"
		case st.zeros >= p.ZeroReports:
			want, reason = 0, fmt.Sprintf("%d reports of no loss", st.zeros)
		case pct == 0:
			reason = fmt.Sprintf("no loss in %d fresh reports of the %d that turn parity off", st.zeros, p.ZeroReports)
		default:
			want = p.least(pct, k)
			reason = fmt.Sprintf("p%.0f loss %.3f over %d edges, group %d: %d parity leave %.4f", p.Percentile*100, pct, len(s.Edges), k, want, Residual(pct, k, want))
		}
		switch {
		case want >= st.m || want == 0:
			st.m, st.lower = want, 0
		default:
			st.lower++
			if st.lower >= p.Hold {
				st.m, st.lower = want, 0
			} else {
				reason = fmt.Sprintf("holding %d parity (%d lower for %d of %d ticks)", st.m, want, st.lower, p.Hold)
			}
		}
		d.Streams[s.SSRC] = control.StreamDecision{Overhead: Overhead(st.m, k), PaceBytesPerSecond: BasePace(s, p.bursts.keep(s), p.Spread)}
		if reason != "" {
			why = append(why, s.Stream+": "+reason)
		}
	}
	forget(p.state, live)
	p.bursts.prune(live)
	d.RepairShares = Shares(in.Edges, need, 0.25)
	d.Reason = strings.Join(why, "; ")
	return d, nil
}

// least is the least parity (≥ 1) leaving at most Target of loss p.
func (p *LossAdaptive) least(loss float64, k int) int {
	top := maxParity(k)
	for m := 1; m < top; m++ {
		if Residual(loss, k, m) <= p.Target {
			return m
		}
	}
	return top
}

// Close implements control.Policy.
func (p *LossAdaptive) Close() error { return nil }
