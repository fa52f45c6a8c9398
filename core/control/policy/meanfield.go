package policy

import (
	"context"
	"fmt"
	"math"
	"strings"

	"github.com/mediapipe/mediapipe/core/control"
)

// MeanField is the seed's mean-field model (docs/control.md): each edge's
// state (loss, round trip, delivery rate) is mixed Own of its own and
// 1−Own of the population's mean, so one edge's noisy report moves the
// choice a little and the population's a lot; the action scales the
// "window" — here the parity per group and the pacing rate — by ÷2, −1,
// keep, +1, ×2, one action per tick. It picks the parity that minimises
// the cloud's expected egress per second: media and parity once (the
// multicast path), plus each edge's repair (its residual loss after FEC),
// subject to delivery within the latency budget: an edge whose repair
// cannot arrive in time (group wait + its round trip beyond the budget)
// must be covered by parity alone.
type MeanField struct {
	Own        float64 // weight of an edge's own state: 0.2
	Hysteresis float64 // least gain, as a fraction of the media rate, worth a move: 0.005
	LateLoss   float64 // residual loss tolerated at an edge repair cannot reach in time: 0.001
	Spread     float64 // seconds the largest burst is paced over: 0.005
	DefaultRTT float64 // seconds, for edges that do not know their round trip yet
	Recover    float64 // fraction of the way back to 1 the parity efficiency drifts a round without parity: 0.01

	prevLoss map[uint32]float64 // population mean loss at the last tick, for pacing feedback
	bursts   bursts
	// eff is each stream's parity efficiency: what parity actually saved
	// the edges in repair (measured: the cloud's repair to them) over what
	// the independent-loss arithmetic expected, kept as two smoothed sums
	// whose ratio, clamped to 0 … 1, is the efficiency. Bursty loss
	// recovers far less than Residual says; eff scales the saving each
	// candidate is credited with, so parity that does not pay is backed
	// off. Absent: 1 (nothing measured yet).
	eff   map[uint32]effSums
	lastM map[uint32]int // the parity applied the round before, to see it held
}

// effSums are the smoothed savings parity made (got) and the arithmetic
// expected (expected), summed over a stream's edges, per media byte.
// Smoothing the sums, not their ratio, weighs a round by how much it
// could measure: a round of little loss barely moves the efficiency, and
// a single noisy round cannot swing it to 0 or 1.
type effSums struct{ got, expected float64 }

// ratio is the efficiency the sums give, 0 … 1.
func (e effSums) ratio() float64 {
	if e.expected <= 0 {
		return 1
	}
	return min(max(e.got/e.expected, 0), 1)
}

// effWeight is the weight of a round's sums in the smoothed ones (as TCP's
// SRTT: 1/8); minExpected is the least saving per edge the arithmetic must
// expect, as a fraction of the media, for a round to be measured.
const (
	effWeight   = 1.0 / 8
	minExpected = 0.005
)

// NewMeanField returns the policy with the seed's weights.
func NewMeanField() *MeanField {
	return &MeanField{Own: 0.2, Hysteresis: 0.005, LateLoss: 0.001, Spread: 0.005, DefaultRTT: 0.05, Recover: 0.01,
		prevLoss: map[uint32]float64{}, bursts: bursts{}, eff: map[uint32]effSums{}, lastM: map[uint32]int{}}
}

// edgeState is one edge's mixed state for one stream.
type edgeState struct {
	id        int
	loss, rtt float64 // mixed loss and round trip: the cost estimate
	own       float64 // own loss: its repair need and its deadline check
	ownRTT    float64 // own round trip (the mean while it knows none)
	repair    float64 // what the cloud repaired to it, per media byte it receives
}

// Actions scales a window w by the seed's action set: ÷2, −step, keep,
// +step, ×2, clamped to [lo, hi].
func Actions(w, step, lo, hi float64) [5]float64 {
	c := func(x float64) float64 { return min(max(x, lo), hi) }
	return [5]float64{c(w / 2), c(w - step), c(w), c(w + step), c(w * 2)}
}

// Decide implements control.Policy.
func (p *MeanField) Decide(_ context.Context, in *control.Input) (control.Decision, error) {
	d := control.Decision{Streams: make(map[uint32]control.StreamDecision, len(in.Streams))}
	var why []string
	need := map[int]float64{}
	live := make(map[uint32]bool, len(in.Streams))
	// Each edge's media rate over all its streams: its repair (counted per
	// edge, all streams) is read as a fraction of it.
	media := map[int]float64{}
	for _, s := range in.Streams {
		for _, e := range s.Edges {
			media[e.Edge] += s.MediaBytesPerSecond
		}
	}
	for i := range in.Streams {
		s := &in.Streams[i]
		live[s.SSRC] = true
		k := GroupSize(s)
		edges := p.mix(s, media)
		cur := ParityOf(s.Current.Overhead, k)
		p.measure(s.SSRC, k, cur, edges)
		m, reason := cur, ""
		if len(edges) == 0 {
			m, reason = 0, "no edge reports: repair only"
		} else {
			m, reason = p.chooseParity(s, k, cur, edges)
		}
		for _, e := range edges { // each edge's expected repair at the choice
			need[e.id] += s.MediaBytesPerSecond * Residual(e.own, k, m)
		}
		pace, paceWhy := p.pace(s, edges)
		d.Streams[s.SSRC] = control.StreamDecision{Overhead: Overhead(m, k), PaceBytesPerSecond: pace}
		why = append(why, s.Stream+": "+reason+paceWhy)
	}
	forget(p.prevLoss, live)
	forget(p.eff, live)
	forget(p.lastM, live)
	p.bursts.prune(live)
	d.RepairShares = Shares(in.Edges, need, 0.25)
	d.Reason = strings.Join(why, "; ")
	return d, nil
}

// mix is each edge's state mixed with the population's mean.
func (p *MeanField) mix(s *control.Stream, media map[int]float64) []edgeState {
	if len(s.Edges) == 0 {
		return nil
	}
	var lossSum, rttSum float64
	rtts := 0
	for _, e := range s.Edges {
		lossSum += e.FractionLost
		if e.RTTSeconds > 0 {
			rttSum += e.RTTSeconds
			rtts++
		}
	}
	meanLoss := lossSum / float64(len(s.Edges))
	meanRTT := p.DefaultRTT
	if rtts > 0 {
		meanRTT = rttSum / float64(rtts)
	}
	out := make([]edgeState, len(s.Edges))
	for i, e := range s.Edges {
		rtt := e.RTTSeconds
		if rtt <= 0 {
			rtt = meanRTT
		}
		var repair float64
		if m := media[e.Edge]; m > 0 {
			repair = e.RepairBytesPerSecond / m
		}
		out[i] = edgeState{id: e.Edge, own: e.FractionLost, ownRTT: rtt, repair: repair,
			loss: p.Own*e.FractionLost + (1-p.Own)*meanLoss,
			rtt:  p.Own*rtt + (1-p.Own)*meanRTT}
	}
	return out
}

// cost is the expected egress per second of a stream at m parity per
// group of k, as a multiple of its media rate, and whether every edge is
// served within the latency budget.
func (p *MeanField) cost(s *control.Stream, k, m int, edges []edgeState) (float64, bool) {
	c := 1 + Overhead(m, k)*ParityBytesRatio(s)
	wait := s.MaxWaitSeconds
	if s.PacketsPerSecond > 0 {
		wait = min(wait, float64(k)/s.PacketsPerSecond)
	}
	ok := true
	eff := p.efficiency(s.SSRC)
	for _, e := range edges {
		c += e.loss - eff*(e.loss-Residual(e.loss, k, m))
		// The deadline is the edge's own: the population's mean must not
		// make one far edge look repairable in time (a 200 ms edge among
		// fifteen of 10 ms mixes to 58 ms), nor its loss look smaller.
		rtt := max(e.ownRTT, e.rtt)
		if s.LatencyBudgetSeconds > 0 && wait+rtt > s.LatencyBudgetSeconds && Residual(e.own, k, m) > p.LateLoss {
			ok = false // its repair would come too late: parity must cover it
		}
	}
	return c, ok
}

// efficiency is the stream's measured parity efficiency (1: none yet).
func (p *MeanField) efficiency(ssrc uint32) float64 {
	if v, ok := p.eff[ssrc]; ok {
		return v.ratio()
	}
	return 1
}

// measure updates the stream's parity efficiency from what the cloud
// repaired to its edges over the round just past, at the parity cur
// applied in it: the population's saving Σ (loss − repair) and what the
// arithmetic expected, Σ (loss − residual), each folded into its smoothed
// sum with weight 1/8; the efficiency is their ratio. The sums start from
// the guess, 1, as if it were a round of its own (the first round's
// expected saving, weighted 1/8 too), so one round does not replace it. Only a round whose parity was also the
// round before's is measured (reports and repair counts lag a little
// behind a change), and only one whose expected saving is large enough to
// measure (half a percent of the media per edge); while no parity is sent
// the saving drifts back towards the expected one by Recover a round, so
// parity is tried again once in a while.
func (p *MeanField) measure(ssrc uint32, k, cur int, edges []edgeState) {
	sums, measured := p.eff[ssrc]
	last, held := p.lastM[ssrc]
	p.lastM[ssrc] = cur
	var got, expected float64
	for _, e := range edges {
		got += e.own - e.repair
		expected += e.own - Residual(e.own, k, cur)
	}
	switch {
	case cur > 0 && held && last == cur && len(edges) > 0 && expected >= minExpected*float64(len(edges)):
		if !measured { // the guess, 1, counts as a round of its own
			sums = effSums{got: expected * effWeight, expected: expected * effWeight}
		}
		sums.got += (got - sums.got) * effWeight
		sums.expected += (expected - sums.expected) * effWeight
	case cur == 0 && measured:
		sums.got += (sums.expected - sums.got) * p.Recover
	}
	if !measured && sums == (effSums{}) {
		return
	}
	if sums.ratio() >= 0.999 {
		delete(p.eff, ssrc)
		return
	}
	p.eff[ssrc] = sums
}

// chooseParity applies the best of the actions on the current parity.
func (p *MeanField) chooseParity(s *control.Stream, k, cur int, edges []edgeState) (int, string) {
	hi := float64(maxParity(k))
	curCost, curOK := p.cost(s, k, cur, edges)
	best, bestCost, bestOK := cur, curCost, curOK
	for _, a := range Actions(float64(cur), 1, 0, hi) {
		m := int(math.Round(a))
		if m == cur {
			continue
		}
		c, ok := p.cost(s, k, m, edges)
		better := false
		switch {
		case ok && !bestOK:
			better = true
		case ok == bestOK && !ok:
			better = m > best // none in time: the most protection
		case ok == bestOK:
			better = c < bestCost-p.Hysteresis
		}
		if better {
			best, bestCost, bestOK = m, c, ok
		}
	}
	var meanLoss float64
	for _, e := range edges {
		meanLoss += e.loss
	}
	meanLoss /= float64(len(edges))
	why := fmt.Sprintf("mean loss %.3f over %d edges, group %d: %d parity, egress %.3f× media", meanLoss, len(edges), k, best, bestCost)
	if eff, ok := p.eff[s.SSRC]; ok {
		why += fmt.Sprintf(", parity saves %.0f%% of what independent loss would", eff.ratio()*100)
	}
	switch {
	case best == 0 && cur == 0:
		why += " (repair only pays here)"
	case !bestOK:
		why += " (some edges' repair cannot arrive within the latency budget)"
	}
	return best, why
}

// pace spreads the stream's largest burst over Spread, never below twice
// its media rate, then steps by feedback: one step down (spread more) while
// the population's loss rises, one step back up once it does not.
func (p *MeanField) pace(s *control.Stream, edges []edgeState) (float64, string) {
	target := BasePace(s, p.bursts.keep(s), p.Spread)
	if target == 0 {
		return 0, ""
	}
	var mean float64
	for _, e := range edges {
		mean += e.loss
	}
	if len(edges) > 0 {
		mean /= float64(len(edges))
	}
	prev, seen := p.prevLoss[s.SSRC]
	p.prevLoss[s.SSRC] = mean
	cur := s.Current.PaceBytesPerSecond
	if cur <= 0 || !seen {
		return target, ""
	}
	floor, step := 2*s.MediaBytesPerSecond, target/4
	acts := Actions(cur, step, floor, 2*target)
	switch {
	case mean > prev+0.01: // losses grew: spread bursts more
		return acts[1], ", loss rising: pace down"
	case cur > 2*target:
		return acts[0], ""
	case cur < target:
		return acts[3], ""
	}
	return acts[2], ""
}

// Close implements control.Policy.
func (p *MeanField) Close() error { return nil }
