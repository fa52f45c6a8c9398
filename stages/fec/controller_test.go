package fec

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/control"
	"github.com/mediapipe/mediapipe/core/stagetest"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// sendGroup sends group source packets of s (sequence numbers from seq0,
// one timestamp) and returns how many parity packets followed them.
func sendGroup(e *Encoder, out *stagetest.Collector, s *core.Stream, ssrc uint32, seq0 uint16, group int) int {
	before := parityCount(out.Packets(), s)
	for i := range group {
		p := core.NewPacket(0)
		p.Data = append(p.Data, rtpPacket(ssrc, seq0+uint16(i), 9000, 1000)...)
		p.Stream = s
		e.handle(p)
	}
	return parityCount(out.Packets(), s) - before
}

func report(s *core.Stream, ssrc uint32, at time.Time, loss float64, ids ...int) []core.Edge {
	var out []core.Edge
	for _, id := range ids {
		out = append(out, core.Edge{ID: id, Streams: []core.EdgeStream{{Stream: s.Name, SSRC: ssrc, At: at, FractionLost: loss, RTTSeconds: 0.01}}})
	}
	return out
}

// TestControllerDrivesEncoderPacerSharer: the edges' loss reaches the
// encoder as more parity per group on the wire, udp-sink as a pacing rate
// and quic-retransmit as repair rates summing to its budget; reports of no
// loss take the parity away again; the repaired bytes reach the policy.
func TestControllerDrivesEncoderPacerSharer(t *testing.T) {
	for _, pol := range []string{"loss-adaptive", "mean-field"} {
		t.Run(pol, func(t *testing.T) {
			edges, pacer := &fakeEdges{}, &fakePacer{}
			sharer := &fakeSharer{budget: 1_000_000, repaired: map[int]uint64{0: 0, 1: 0, 2: 0}}
			e, clock, out := ctlEncoder(t, map[string]any{"policy": pol, "group": int64(10), "overhead": 0.0}, edges, pacer, sharer)
			const ssrc = 0xabc
			ids := make([]int, 16) // enough edges for parity to pay
			for i := range ids {
				ids[i] = i
			}
			s := core.NewStream("live/ctl")
			e.handle(core.NewEvent(core.EventStart, s))
			seq := uint16(0)
			group := func() int { n := sendGroup(e, out, s, ssrc, seq, 10); seq += 10; return n }
			if n := group(); n != 0 {
				t.Fatalf("%d parity at overhead 0", n)
			}
			lossy := func(loss float64) {
				clock.Advance(time.Second)
				edges.set(report(s, ssrc, clock.Now(), loss, ids...))
				sharer.mu.Lock()
				sharer.repaired[1] += 5000 // edge 1 got 5000 B of repair this second
				sharer.mu.Unlock()
				for range 30 { // 300 packets/s, each group of 10 back to back
					group()
				}
				e.ctl.tick()
			}
			for range 4 {
				lossy(0.05)
			}
			if n := group(); n < 2 {
				t.Fatalf("%d parity per group of 10 after reports of 5 %% loss, want at least 2", n)
			}
			tick, ok := e.LastTick()
			if !ok || tick.Policy != pol || len(tick.Input.Streams) != 1 || len(tick.Input.Streams[0].Edges) != 16 || tick.Err != "" {
				t.Fatalf("last tick %+v", tick)
			}
			in := tick.Input.Streams[0]
			if in.SSRC != ssrc || in.MediaBytesPerSecond <= 0 || in.KeyframeBurstBytes < 10*1012 || in.MeanGroup != 10 {
				t.Fatalf("stream input %+v", in)
			}
			if r := in.Edges[1].RepairBytesPerSecond; r != 5000 {
				t.Fatalf("edge 1's repair %v B/s, want 5000", r)
			}
			if p := pacer.get(s); p < 2*in.MediaBytesPerSecond {
				t.Fatalf("pace %v B/s for a stream of %v B/s, want ≥ twice", p, in.MediaBytesPerSecond)
			}
			rates := sharer.get()
			sum := 0
			for _, r := range rates {
				sum += r
			}
			if len(rates) != 16 || sum > sharer.budget || sum < sharer.budget*99/100 {
				t.Fatalf("repair rates %v for a budget of %d", rates, sharer.budget)
			}
			for range 6 {
				lossy(0)
			}
			if n := group(); n != 0 {
				t.Fatalf("%d parity per group after reports of no loss, want none", n)
			}
		})
	}
}

// TestControllerStatic: static applies the fixed overhead (live) and
// touches no pacing.
func TestControllerStatic(t *testing.T) {
	pacer := &fakePacer{}
	e, _, out := ctlEncoder(t, map[string]any{"policy": "static", "overhead": 0.3, "group": int64(10)}, pacer)
	s := core.NewStream("live/static")
	e.handle(core.NewEvent(core.EventStart, s))
	sendGroup(e, out, s, 7, 0, 10)
	e.ctl.tick()
	if n := sendGroup(e, out, s, 7, 10, 10); n != 3 {
		t.Fatalf("%d parity, want 3", n)
	}
	_ = e.Reconfigure(&EncoderConfig{Overhead: 0.1, Interval: time.Second, LatencyBudget: 150 * time.Millisecond})
	e.ctl.tick()
	if n := sendGroup(e, out, s, 7, 20, 10); n != 1 {
		t.Fatalf("%d parity after the reload, want 1", n)
	}
	if pacer.sets != 0 {
		t.Fatalf("static set the pace %d times", pacer.sets)
	}
}

// scripted is a policy the test drives: each call takes its answer from
// answer, or blocks until release closes (ignoring its context).
type scripted struct {
	mu      sync.Mutex
	answer  func(*control.Input) (control.Decision, error)
	release chan struct{}
	calls   int
	closed  bool
}

func (p *scripted) Decide(_ context.Context, in *control.Input) (control.Decision, error) {
	p.mu.Lock()
	p.calls++
	a, r := p.answer, p.release
	p.mu.Unlock()
	if r != nil {
		<-r
	}
	return a(in)
}

func (p *scripted) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	return nil
}

func overheadFor(v float64) func(*control.Input) (control.Decision, error) {
	return func(in *control.Input) (control.Decision, error) {
		d := control.Decision{Streams: map[uint32]control.StreamDecision{}, Reason: "test"}
		for _, s := range in.Streams {
			d.Streams[s.SSRC] = control.StreamDecision{Overhead: v}
		}
		return d, nil
	}
}

// TestControllerKeepsDecisionOnFailure: a policy that errors, or does not
// answer within its deadline, leaves the current decision applied; each
// such round is counted; a stuck call blocks no later tick and the loop
// asks again once it returned.
func TestControllerKeepsDecisionOnFailure(t *testing.T) {
	pol := &scripted{answer: overheadFor(0.5)}
	control.SetPluginOpener(func(path string) (control.Policy, error) {
		if path == "" {
			return nil, errors.New("no path")
		}
		return pol, nil
	})
	e, _, out := ctlEncoder(t, map[string]any{"policy": "plugin", "path": "fake-policy", "group": int64(10), "overhead": 0.0}, &fakeEdges{})
	if err := e.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A generous deadline for the calls that answer (a loaded machine or
	// -race must not make them late); a short one only around the hang.
	e.ctl.deadline = 30 * time.Second
	s := core.NewStream("live/fail")
	e.handle(core.NewEvent(core.EventStart, s))
	sendGroup(e, out, s, 9, 0, 10)
	e.ctl.tick()
	if n := sendGroup(e, out, s, 9, 10, 10); n != 5 {
		t.Fatalf("%d parity, want 5", n)
	}
	errs := func() float64 { return core.CounterValue(e.ctl.errors) }

	pol.mu.Lock()
	pol.answer = func(*control.Input) (control.Decision, error) { return control.Decision{}, errors.New("boom") }
	pol.mu.Unlock()
	e.ctl.tick()
	if tick, _ := e.LastTick(); tick.Err == "" || tick.Decision.Streams[9].Overhead != 0.5 || errs() != 1 {
		t.Fatalf("after an error: tick %+v, %v errors", tick, errs())
	}
	if n := sendGroup(e, out, s, 9, 20, 10); n != 5 {
		t.Fatalf("%d parity after the policy failed, want the 5 kept", n)
	}

	release := make(chan struct{})
	pol.mu.Lock()
	pol.answer, pol.release = overheadFor(0.1), release
	pol.mu.Unlock()
	e.ctl.deadline = 50 * time.Millisecond
	e.ctl.tick() // overruns its deadline
	e.ctl.tick() // the call is still stuck: not asked again
	e.ctl.deadline = 30 * time.Second
	pol.mu.Lock()
	calls := pol.calls
	pol.mu.Unlock()
	if errs() != 3 || calls != 3 {
		t.Fatalf("%v errors, %d calls; want 3 and 3", errs(), calls)
	}
	if n := sendGroup(e, out, s, 9, 30, 10); n != 5 {
		t.Fatalf("%d parity while the policy hangs, want the 5 kept", n)
	}
	pol.mu.Lock()
	pol.release = nil
	pol.mu.Unlock()
	close(release)
	testrun.Eventually(t, 5*time.Second, "the policy asked again and answered", func() bool {
		e.ctl.tick()
		tick, _ := e.LastTick()
		return tick.Err == ""
	})
	if n := sendGroup(e, out, s, 9, 40, 10); n != 1 {
		t.Fatalf("%d parity once the policy answers again, want 1", n)
	}
}

// TestControllerForgetsEndedStreams: a stream's end takes its state from
// the encoder and the controller; a decision for a stream that ended, or
// that the encoder never saw, leaves nothing behind.
func TestControllerForgetsEndedStreams(t *testing.T) {
	pacer := &fakePacer{}
	e, _, out := ctlEncoder(t, map[string]any{"policy": "mean-field", "overhead": 0.2}, pacer, &fakeEdges{})
	a, b := core.NewStream("live/a"), core.NewStream("live/b")
	e.handle(core.NewEvent(core.EventStart, a))
	e.handle(core.NewEvent(core.EventStart, b))
	sendGroup(e, out, a, 1, 0, 10)
	sendGroup(e, out, b, 2, 0, 10)
	e.ctl.tick() // no edges: both streams to 0, paced
	if e.overrideCount() != 2 || len(e.ctl.prev) != 2 || len(e.ctl.paced) != 2 {
		t.Fatalf("overrides %d, samples %d, paced %d; want 2 each", e.overrideCount(), len(e.ctl.prev), len(e.ctl.paced))
	}
	e.handle(core.NewEvent(core.EventEnd, a))
	e.SetOverhead(a, 0.4)                        // ended
	e.SetOverhead(core.NewStream("live/x"), 0.4) // never seen
	e.ctl.tick()
	if e.overrideCount() != 1 || len(e.ctl.prev) != 1 || len(e.ctl.paced) != 1 || len(e.ctl.meanGroup) > 1 {
		t.Fatalf("after a's end: overrides %d, samples %d, paced %d, groups %d; want 1",
			e.overrideCount(), len(e.ctl.prev), len(e.ctl.paced), len(e.ctl.meanGroup))
	}
	e.mu.Lock()
	flows := len(e.flows)
	e.mu.Unlock()
	if flows != 1 {
		t.Fatalf("%d flows, want 1", flows)
	}
	if tick, _ := e.LastTick(); len(tick.Input.Streams) != 1 || tick.Input.Streams[0].Stream != "live/b" {
		t.Fatalf("last tick's streams %+v", tick.Input.Streams)
	}
}

// TestControllerWithoutFeedback: with no quic-retransmit in the pipeline
// (no reports, no repair) the adaptive policies leave the fixed overhead.
func TestControllerWithoutFeedback(t *testing.T) {
	e, _, out := ctlEncoder(t, map[string]any{"policy": "mean-field", "overhead": 0.2, "group": int64(10)}, &fakePacer{})
	s := core.NewStream("live/alone")
	e.handle(core.NewEvent(core.EventStart, s))
	sendGroup(e, out, s, 5, 0, 10)
	e.ctl.tick()
	if n := sendGroup(e, out, s, 5, 10, 10); n != 2 {
		t.Fatalf("%d parity, want the fixed 2", n)
	}
	if tick, ok := e.LastTick(); !ok || len(tick.Input.Streams) != 1 {
		t.Fatalf("tick %+v", tick)
	}
}

// startScripted runs a fec-encoder with params (policy "plugin", answered
// by a scripted policy) on a fake clock, with one packet of stream through
// it. The caller closes h.
func startScripted(t *testing.T, params map[string]any, stream string) (*scripted, *stagetest.FakeClock, core.Stage, *stagetest.Harness) {
	t.Helper()
	pol := &scripted{answer: overheadFor(0.3)}
	control.SetPluginOpener(func(string) (control.Policy, error) { return pol, nil })
	env := core.TestEnv("fec-encoder")
	clock := stagetest.NewFakeClock(time.Unix(0, 0))
	env.Clock = clock
	env.Siblings = func() []core.Stage { return nil }
	params["policy"], params["path"] = "plugin", "p"
	st := stagetest.Build(t, "fec-encoder", params, env)
	h := stagetest.Start(t, st, env, false)
	s := h.StartStream(stream)
	h.SendData(s, 0, 0, rtpPacket(3, 0, 0, 100))
	h.Out.WaitData(1, 5*time.Second)
	return pol, clock, st, h
}

// TestControllerLoopEndsWithRun: the loop runs on the stage's clock while
// Run runs, and its goroutine and the policy are gone when Run returns.
func TestControllerLoopEndsWithRun(t *testing.T) {
	pol, clock, st, h := startScripted(t, map[string]any{}, "live/loop")
	testrun.Eventually(t, 5*time.Second, "a tick", func() bool {
		clock.Advance(time.Second)
		pol.mu.Lock()
		defer pol.mu.Unlock()
		return pol.calls > 0
	})
	done := st.(*Encoder).ctl.loopDone
	select {
	case <-done:
		t.Fatal("the loop ended while Run runs")
	default:
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done: // Run returned only after the loop's goroutine ended
	default:
		t.Fatal("the loop's goroutine still runs after Run returned")
	}
	pol.mu.Lock()
	defer pol.mu.Unlock()
	if !pol.closed {
		t.Fatal("the policy was not closed when Run returned")
	}
}

// TestControllerIntervalReload: a reload that shortens interval takes
// effect at once, not when the old (long) timer runs out.
func TestControllerIntervalReload(t *testing.T) {
	pol, clock, st, h := startScripted(t, map[string]any{"interval": "60s"}, "live/reload")
	defer h.Close()
	e := st.(*Encoder)
	cfg := e.cfg
	cfg.Interval = time.Second
	if err := e.Reconfigure(&cfg); err != nil {
		t.Fatal(err)
	}
	start := clock.Now()
	testrun.Eventually(t, 10*time.Second, "a tick at the new interval", func() bool {
		if clock.Now().Sub(start) > 30*time.Second {
			t.Fatalf("no tick within 30 s of a reload to interval = 1s")
		}
		clock.Advance(100 * time.Millisecond)
		pol.mu.Lock()
		defer pol.mu.Unlock()
		return pol.calls > 0
	})
}

// TestSanitizeShares: shares that add up to more than the budget are
// scaled down to it; bad ones are dropped.
func TestSanitizeShares(t *testing.T) {
	d := sanitize(control.Decision{RepairShares: map[int]float64{0: 0.9, 1: 0.6, 2: 1.5, 3: -1, 4: math.NaN()}})
	sum := 0.0
	for _, v := range d.RepairShares {
		sum += v
	}
	if len(d.RepairShares) != 3 || math.Abs(sum-1) > 1e-9 || math.Abs(d.RepairShares[2]-1/2.5) > 1e-9 {
		t.Fatalf("shares %v (sum %v), want 0.9:0.6:1 scaled to 1", d.RepairShares, sum)
	}
	d = sanitize(control.Decision{RepairShares: map[int]float64{0: 0.3, 1: 0.2}})
	if d.RepairShares[0] != 0.3 || d.RepairShares[1] != 0.2 {
		t.Fatalf("shares under 1 changed: %v", d.RepairShares)
	}
}

// TestControllerNewSSRC: when the stream's SSRC changes (a publisher
// reconnects; udp-source's standby takes over) the edges report the old
// one for a round or two: the parity stays meanwhile, for a grace period
// only, and follows the reports on the new SSRC once they come.
func TestControllerNewSSRC(t *testing.T) {
	for _, pol := range []string{"loss-adaptive", "mean-field"} {
		t.Run(pol, func(t *testing.T) {
			edges := &fakeEdges{}
			e, clock, out := ctlEncoder(t, map[string]any{"policy": pol, "group": int64(10), "overhead": 0.0}, edges)
			ids := make([]int, 16)
			for i := range ids {
				ids[i] = i
			}
			s := core.NewStream("live/ssrc")
			e.handle(core.NewEvent(core.EventStart, s))
			seq := uint16(0)
			ssrc := uint32(0xa)
			group := func() int { n := sendGroup(e, out, s, ssrc, seq, 10); seq += 10; return n }
			round := func(reported uint32, fresh bool) {
				clock.Advance(time.Second)
				if fresh {
					edges.set(report(s, reported, clock.Now(), 0.05, ids...))
				}
				for range 30 {
					group()
				}
				e.ctl.tick()
			}
			for range 4 {
				round(0xa, true)
			}
			before := group()
			if before < 2 {
				t.Fatalf("%d parity per group of 10 at 5 %% loss", before)
			}
			ssrc, seq = 0xb, 5000 // the new sender; the edges still report 0xa
			for i := range 3 {
				round(0xa, false)
				if n := group(); n < before {
					t.Fatalf("round %d after the new SSRC: %d parity, want the %d kept", i, n, before)
				}
			}
			// Edges that went are not stood in for.
			edges.set(report(s, 0xa, clock.Now(), 0.05, ids[:8]...))
			round(0xa, false)
			if tick, _ := e.LastTick(); len(tick.Input.Streams[0].Edges) != 8 {
				t.Fatalf("%d edges' old reports stand in, want the 8 connected", len(tick.Input.Streams[0].Edges))
			}
			// Past the grace with no report on 0xb: the old reports no longer count.
			clock.Advance(e.ctl.ssrcGrace())
			round(0xa, false)
			if tick, _ := e.LastTick(); len(tick.Input.Streams[0].Edges) != 0 {
				t.Fatalf("old reports still used %v after the grace", clock.Now())
			}
			for range 3 {
				round(0xb, true)
			}
			if n := group(); n < 2 {
				t.Fatalf("%d parity once the edges report the new SSRC", n)
			}
			if tick, _ := e.LastTick(); tick.Input.Streams[0].Edges[0].SSRC != 0xb {
				t.Fatalf("reports %+v", tick.Input.Streams[0].Edges)
			}
		})
	}
}

// TestControllerParityBytes: the policy is told what a parity packet costs
// on the wire (its group's longest packet plus headers), not the mean
// source packet: measured from the parity sent, or, while none is, from
// the groups it would make.
func TestControllerParityBytes(t *testing.T) {
	e, _, _ := ctlEncoder(t, map[string]any{"policy": "static", "overhead": 0.0, "group": int64(10)}, &fakeEdges{})
	s := core.NewStream("live/mixed")
	e.handle(core.NewEvent(core.EventStart, s))
	seq := uint16(0)
	mixed := func() { // nine audio-sized packets and one video-sized
		for i := range 10 {
			size := 100
			if i == 4 {
				size = 1000
			}
			p := core.NewPacket(0)
			p.Data = append(p.Data, rtpPacket(3, seq, uint32(i), size)...)
			p.Stream = s
			seq++
			e.handle(p)
		}
	}
	want := float64(parityHead + shardPrefix + rtpHeader + 1000)
	for _, overhead := range []float64{0, 0.3} {
		_ = e.Reconfigure(&EncoderConfig{Overhead: overhead, Interval: time.Second, LatencyBudget: 150 * time.Millisecond})
		mixed() // the first group after a change may straddle it
		e.ctl.tick()
		for range 5 {
			mixed()
		}
		e.ctl.tick()
		tick, _ := e.LastTick()
		in := tick.Input.Streams[0]
		if in.MeanParityBytes != want || in.MeanPacketBytes >= want/4 {
			t.Fatalf("overhead %v: mean parity %v B (want %v), mean packet %v B", overhead, in.MeanParityBytes, want, in.MeanPacketBytes)
		}
	}
}
