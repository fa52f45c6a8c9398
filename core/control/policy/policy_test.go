package policy

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/control"
)

func TestBinomialTail(t *testing.T) {
	cases := []struct {
		n, m int
		p    float64
		want float64
	}{
		{10, 0, 0.3, 1},
		{10, 11, 0.3, 0},
		{10, 1, 0, 0},
		{10, 1, 1, 1},
		{1, 1, 0.05, 0.05},
		{11, 2, 0.05, 1 - math.Pow(0.95, 11) - 11*0.05*math.Pow(0.95, 10)},
		{20, 10, 0.5, 0.5880985260009766}, // P(X ≥ 10), X ~ B(20, ½): (2^20 + C(20,10)) / 2^21
	}
	for _, c := range cases {
		if got := BinomialTail(c.n, c.m, c.p); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("BinomialTail(%d, %d, %v) = %v, want %v", c.n, c.m, c.p, got, c.want)
		}
	}
}

func TestResidualAndGeometry(t *testing.T) {
	// One parity over 10 at 5 %: lost and at least one other of 10 lost.
	if got, want := Residual(0.05, 10, 1), 0.05*(1-math.Pow(0.95, 10)); math.Abs(got-want) > 1e-12 {
		t.Errorf("Residual(0.05, 10, 1) = %v, want %v", got, want)
	}
	if Residual(0.05, 10, 0) != 0.05 || Residual(0, 10, 2) != 0 {
		t.Error("no parity leaves the loss; no loss leaves none")
	}
	for m := 1; m < 8; m++ { // more parity, less residual
		if Residual(0.05, 16, m+1) >= Residual(0.05, 16, m) {
			t.Errorf("residual does not fall from %d to %d parity", m, m+1)
		}
	}
	groups := []struct {
		s    control.Stream
		want int
	}{
		{control.Stream{Group: 16, MeanGroup: 12.4}, 12},
		{control.Stream{Group: 16, MeanGroup: 40}, 16},
		{control.Stream{Group: 16, PacketsPerSecond: 400, MaxWaitSeconds: 0.02}, 8},
		{control.Stream{Group: 16, PacketsPerSecond: 10, MaxWaitSeconds: 0.02}, 1},
		{control.Stream{Group: 16}, 16},
	}
	for _, g := range groups {
		if got := GroupSize(&g.s); got != g.want {
			t.Errorf("GroupSize(%+v) = %d, want %d", g.s, got, g.want)
		}
	}
	for _, c := range []struct {
		m, k int
	}{{1, 10}, {3, 16}, {2, 7}, {5, 5}} {
		if got := ParityOf(Overhead(c.m, c.k), c.k); got != c.m {
			t.Errorf("ParityOf(Overhead(%d, %d)) = %d", c.m, c.k, got)
		}
	}
}

func TestShares(t *testing.T) {
	cases := []struct {
		name  string
		edges []int
		need  map[int]float64
		floor float64
		want  map[int]float64
	}{
		{"none", nil, nil, 0.25, nil},
		{"no need: equal", []int{0, 1}, nil, 0.25, map[int]float64{0: 0.5, 1: 0.5}},
		{"all need on one: the other keeps its floor", []int{0, 1}, map[int]float64{1: 10}, 0.5, map[int]float64{0: 0.25, 1: 0.75}},
		{"proportional", []int{3, 4}, map[int]float64{3: 1, 4: 3}, 0, map[int]float64{3: 0.25, 4: 0.75}},
	}
	for _, c := range cases {
		got := Shares(c.edges, c.need, c.floor)
		if len(got) != len(c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
			continue
		}
		for k, v := range c.want {
			if math.Abs(got[k]-v) > 1e-12 {
				t.Errorf("%s: %v, want %v", c.name, got, c.want)
			}
		}
	}
}

// stream is a 4 Mbit/s stream of groups of 16 with n edges at loss.
func stream(ssrc uint32, n int, loss float64, cur float64, at time.Time) control.Stream {
	s := control.Stream{Stream: "live/s", SSRC: ssrc, MediaBytesPerSecond: 500_000, PacketsPerSecond: 420,
		MeanPacketBytes: 1190, KeyframeBurstBytes: 60_000, Group: 16, MaxWaitSeconds: 0.04, MeanGroup: 16,
		LatencyBudgetSeconds: 0.15, Current: control.StreamDecision{Overhead: cur}}
	for i := range n {
		s.Edges = append(s.Edges, control.EdgeReport{Edge: i, EdgeStream: core.EdgeStream{SSRC: ssrc, At: at, FractionLost: loss, RTTSeconds: 0.01}})
	}
	return s
}

func input(streams ...control.Stream) *control.Input {
	in := &control.Input{IntervalSeconds: 1, Streams: streams}
	seen := map[int]bool{}
	for _, s := range streams {
		for _, e := range s.Edges {
			if !seen[e.Edge] {
				seen[e.Edge] = true
				in.Edges = append(in.Edges, e.Edge)
			}
		}
	}
	return in
}

func TestStatic(t *testing.T) {
	o := 0.25
	p, _ := New(NameStatic, func() float64 { return o })
	d, err := p.Decide(context.Background(), input(stream(1, 2, 0.1, 0, time.Now()), stream(2, 0, 0, 0, time.Now())))
	if err != nil || d.Streams[1].Overhead != 0.25 || d.Streams[2].Overhead != 0.25 || d.Streams[1].PaceBytesPerSecond != 0 {
		t.Fatalf("%+v %v", d, err)
	}
	if d.RepairShares[0] != 0.5 || d.RepairShares[1] != 0.5 {
		t.Fatalf("shares %v, want equal", d.RepairShares)
	}
	o = 0
	if d, _ := p.Decide(context.Background(), input(stream(1, 2, 0.1, 0, time.Now()))); d.Streams[1].Overhead != 0 {
		t.Fatal("static did not follow its overhead")
	}
}

// TestLossAdaptive steps the policy through reports, one tick each.
func TestLossAdaptive(t *testing.T) {
	p := NewLossAdaptive()
	at := time.Unix(1000, 0)
	steps := []struct {
		name  string
		edges int
		loss  float64
		want  int // parity per group of 16
	}{
		{"no edges: no parity", 0, 0, 0},
		{"5 % loss: at once", 16, 0.05, 3},
		{"10 % loss: more", 16, 0.10, 5},
		{"2 % loss: held", 16, 0.02, 5},
		{"2 % loss: held", 16, 0.02, 5},
		{"2 % loss: lowered after 3 ticks", 16, 0.02, 1},
		{"no loss: held", 16, 0, 1},
		{"no loss: held", 16, 0, 1},
		{"no loss, 3rd report: off", 16, 0, 0},
		{"loss again: on", 16, 0.05, 3},
		{"no edges again: off", 0, 0, 0},
	}
	cur := 0.0
	for i, s := range steps {
		at = at.Add(time.Second)
		d, err := p.Decide(context.Background(), input(stream(7, s.edges, s.loss, cur, at)))
		if err != nil {
			t.Fatal(err)
		}
		cur = d.Streams[7].Overhead
		if got := ParityOf(cur, 16); got != s.want {
			t.Fatalf("step %d (%s): %d parity (overhead %.3f), want %d; reason %q", i, s.name, got, cur, s.want, d.Reason)
		}
	}
	// The same report seen twice is one report of no loss, not two.
	p = NewLossAdaptive()
	cur = 0.2
	for range 5 {
		d, _ := p.Decide(context.Background(), input(stream(7, 4, 0, cur, at)))
		cur = d.Streams[7].Overhead
	}
	if cur == 0 {
		t.Fatal("one report of no loss, repeated, turned parity off")
	}
	if len(p.state) != 1 {
		t.Fatalf("%d streams of state", len(p.state))
	}
	_, _ = p.Decide(context.Background(), input())
	if len(p.state) != 0 {
		t.Fatal("state of a stream gone remains")
	}
}

// TestMeanField: the action set moves the parity one action per tick to
// the egress minimum; few edges or low rates fall back to repair only; an
// edge whose repair comes too late is covered by parity.
func TestMeanField(t *testing.T) {
	run := func(s control.Stream, ticks int) (control.Decision, float64) {
		p := NewMeanField()
		var d control.Decision
		for range ticks {
			d, _ = p.Decide(context.Background(), input(s))
			s.Current = d.Streams[s.SSRC]
		}
		return d, s.Current.Overhead
	}
	at := time.Unix(1000, 0)
	cases := []struct {
		name     string
		s        control.Stream
		ticks    int
		min, max int // parity per group of k
	}{
		{"16 edges at 5 %", stream(1, 16, 0.05, 0, at), 6, 3, 4},
		{"16 edges at 0 % from 0.25", stream(1, 16, 0, 0.25, at), 4, 0, 0},
		{"1 edge at 5 %: repair only", stream(1, 1, 0.05, 0, at), 6, 0, 0},
		{"no edges: none", stream(1, 0, 0, 0.25, at), 1, 0, 0},
	}
	for _, c := range cases {
		d, o := run(c.s, c.ticks)
		k := GroupSize(&c.s)
		if m := ParityOf(o, k); m < c.min || m > c.max {
			t.Errorf("%s: %d parity per %d, want %d…%d; %s", c.name, m, k, c.min, c.max, d.Reason)
		}
	}
	// One step per tick: from none, 5 % over 16 edges goes 0 → 1 → 2 → 3.
	p := NewMeanField()
	s := stream(1, 16, 0.05, 0, at)
	for i, want := range []int{1, 2, 3, 3} {
		d, _ := p.Decide(context.Background(), input(s))
		s.Current = d.Streams[1]
		if m := ParityOf(s.Current.Overhead, 16); m != want {
			t.Fatalf("tick %d: %d parity, want %d", i, m, want)
		}
	}
	// Low rate: 600 kbit/s, groups of ~2 packets within max_wait. With 4
	// edges parity costs more than repairing each; with 32 it pays.
	low := func(n int) control.Stream {
		s := stream(1, n, 0.05, 0, at)
		s.MediaBytesPerSecond, s.PacketsPerSecond, s.MeanGroup = 75_000, 63, 0
		return s
	}
	if _, o := run(low(4), 6); o != 0 {
		t.Errorf("600 kbit/s to 4 edges: overhead %.2f, want repair only", o)
	}
	if _, o := run(low(32), 6); o == 0 {
		t.Error("600 kbit/s to 32 edges: no parity, but 32 × 5 % repair costs more")
	}
	// Far edges: a repair round trip of 200 ms misses the 150 ms budget,
	// so parity must leave (almost) nothing to repair, even for one edge.
	far := stream(1, 1, 0.05, 0, at)
	far.Edges[0].RTTSeconds = 0.2
	d, o := run(far, 8)
	if m := ParityOf(o, 16); Residual(0.05, 16, m) > NewMeanField().LateLoss {
		t.Errorf("far edge: %d parity leave %.4f; %s", m, Residual(0.05, 16, m), d.Reason)
	}
	// One far edge among fifteen near ones: its own round trip, not the
	// mixed one (≈ 58 ms), decides whether its repair arrives in time, and
	// its own loss what parity must leave it.
	crowd := stream(1, 16, 0.05, 0, at)
	crowd.Edges[0].RTTSeconds = 0.2
	d, o = run(crowd, 10)
	if m := ParityOf(o, 16); Residual(0.05, 16, m) > NewMeanField().LateLoss {
		t.Errorf("far edge among 15 near: %d parity leave it %.4f; %s", m, Residual(0.05, 16, m), d.Reason)
	}
	crowd = stream(1, 16, 0.01, 0, at) // the far edge loses more than the rest
	crowd.Edges[0].RTTSeconds, crowd.Edges[0].FractionLost = 0.2, 0.08
	d, o = run(crowd, 10)
	if m := ParityOf(o, 16); Residual(0.08, 16, m) > NewMeanField().LateLoss {
		t.Errorf("far lossy edge among 15 near: %d parity leave it %.4f; %s", m, Residual(0.08, 16, m), d.Reason)
	}
	// Parity is as long as a group's longest packet: where audio and video
	// share groups it costs twice the mean packet, and 4 edges at 5 % no
	// longer pay for it.
	few := stream(1, 4, 0.05, 0, at)
	if _, o := run(few, 6); o == 0 {
		t.Fatal("4 edges at 5 %: no parity even at the mean packet's size")
	}
	few.MeanParityBytes = 2 * few.MeanPacketBytes
	if d, o := run(few, 6); o != 0 {
		t.Errorf("4 edges at 5 %%, parity twice the mean packet: overhead %.3f, want repair only; %s", o, d.Reason)
	}
	// Parity that does not save what the arithmetic expects (bursty loss:
	// the cloud still repairs each edge nearly all it lost) is backed off;
	// parity that does is kept.
	for _, c := range []struct {
		name     string
		repaired func(loss float64, m int) float64 // fraction of the media repaired to an edge
		parity   bool
	}{
		{"saves as expected", func(loss float64, m int) float64 { return Residual(loss, 16, m) }, true},
		{"saves nothing", func(loss float64, m int) float64 { return loss }, false},
	} {
		// After 12 rounds to learn, count the rounds with parity over 24
		// more: parity that pays is kept in all; parity that does not is
		// off in most (a round now and then tries it again: Recover).
		p := NewMeanField()
		s := stream(1, 16, 0.03, 0, at)
		with := 0
		for r := range 36 {
			m := ParityOf(s.Current.Overhead, 16)
			for i := range s.Edges {
				s.Edges[i].RepairBytesPerSecond = c.repaired(0.03, m) * s.MediaBytesPerSecond
			}
			d, _ := p.Decide(context.Background(), input(s))
			s.Current = d.Streams[1]
			if r >= 12 && s.Current.Overhead > 0 {
				with++
			}
		}
		if c.parity && with != 24 || !c.parity && with > 24/3 {
			t.Errorf("16 edges at 3 %%, parity %s: parity in %d rounds of 24", c.name, with)
		}
	}
	// Pacing: the keyframe over 5 ms, never below twice the media rate;
	// rising loss spreads it more.
	p = NewMeanField()
	s = stream(1, 16, 0.01, 0, at)
	d, _ = p.Decide(context.Background(), input(s))
	if pace := d.Streams[1].PaceBytesPerSecond; pace != 60_000/0.005 {
		t.Fatalf("pace %v, want the 60 kB burst over 5 ms", pace)
	}
	s.Current = d.Streams[1]
	s.KeyframeBurstBytes = 12_000 // a second without a keyframe: the pace holds
	d, _ = p.Decide(context.Background(), input(s))
	if pace := d.Streams[1].PaceBytesPerSecond; pace < 0.9*60_000/0.005 {
		t.Fatalf("pace %v after a round without a keyframe", pace)
	}
	s.Current = d.Streams[1]
	for i := range s.Edges {
		s.Edges[i].FractionLost = 0.05
	}
	d, _ = p.Decide(context.Background(), input(s))
	if pace := d.Streams[1].PaceBytesPerSecond; pace >= s.Current.PaceBytesPerSecond || pace < 2*s.MediaBytesPerSecond {
		t.Fatalf("pace %v after loss rose from %v", pace, s.Current.PaceBytesPerSecond)
	}
	// Shares follow each edge's repair need, with a floor.
	s = stream(1, 3, 0.01, 0, at)
	s.Edges[2].FractionLost = 0.2
	d, _ = p.Decide(context.Background(), input(s))
	sh := d.RepairShares
	if sh[2] <= sh[0] || sh[0] < 0.25/3-1e-9 || math.Abs(sh[0]+sh[1]+sh[2]-1) > 1e-9 {
		t.Fatalf("shares %v", sh)
	}
}
