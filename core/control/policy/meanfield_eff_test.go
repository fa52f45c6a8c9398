package policy

import "testing"

// TestParityEfficiency: the efficiency is the ratio of two smoothed sums
// that start from 1: one round that saved nothing does not replace the
// guess (it falls by about half, and on from there); a round whose
// expected saving is below half a percent of the media per edge is not
// measured at all.
func TestParityEfficiency(t *testing.T) {
	edges := func(loss, repair float64) []edgeState {
		out := make([]edgeState, 16)
		for i := range out {
			out[i] = edgeState{id: i, own: loss, loss: loss, repair: repair}
		}
		return out
	}
	p := NewMeanField()
	p.measure(1, 16, 2, edges(0.03, 0.03)) // the parity's first round: not measured
	if e := p.efficiency(1); e != 1 {
		t.Fatalf("efficiency %v before a measured round", e)
	}
	p.measure(1, 16, 2, edges(0.03, 0.03)) // saved nothing
	e1 := p.efficiency(1)
	if e1 < 0.4 || e1 > 0.6 {
		t.Fatalf("efficiency %v after one round that saved nothing, want about half the guess", e1)
	}
	p.measure(1, 16, 2, edges(0.03, 0.03))
	if e2 := p.efficiency(1); e2 >= e1 {
		t.Fatalf("efficiency %v after a second such round, was %v", e2, e1)
	}

	// 16 edges at 0.4 % loss, 4 parity: the arithmetic expects 0.4 % a
	// edge saved, too little to tell from noise.
	p = NewMeanField()
	for range 4 {
		p.measure(1, 16, 4, edges(0.004, 0.004))
	}
	if e := p.efficiency(1); e != 1 {
		t.Fatalf("efficiency %v measured on an expected saving of 0.4 %% an edge", e)
	}
}
