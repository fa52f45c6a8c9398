package host

import (
	"testing"

	"github.com/mediapipe/mediapipe/core"
)

// testTee is a tee whose main queue and n branch queues have room for
// queue packets each; the branches' pumps run until the tee closes.
func testTee(tb testing.TB, queue, n int) (*teeOutput, func()) {
	m := core.NewMetrics()
	up, down := m.Stage("b", 1, "up"), m.Stage("b", 2, "down")
	hard := make(chan struct{})
	t := newTee(&chanOutput{ch: make(chan *core.Packet, queue), out: up.Out, in: down.In,
		full: down.Drop("queue_full"), gone: down.Drop("stage_stopped"), hard: hard}, false)
	for i := range n {
		first := &RunningStage{in: make(chan *core.Packet, queue), Env: &core.Env{Metrics: m.Stage("branch", i, "first")}}
		b := newBranchOutput(&Pipeline{streams: map[*core.Stream]struct{}{}}, first, false)
		b.hard = hard
		go b.pump()
		t.attach(b)
	}
	return t, func() {
		t.Close()
		for _, b := range t.branches() {
			<-b.done
		}
		close(hard)
	}
}

// drain releases what reaches ch until it closes.
func drain(ch chan *core.Packet) chan struct{} {
	done := make(chan struct{})
	go func() {
		for p := range ch {
			p.Release()
		}
		close(done)
	}()
	return done
}

// BenchmarkTeeEmit is BenchmarkEmit for a stage two branches tap: each
// packet is shared with both, no payload copied.
func BenchmarkTeeEmit(b *testing.B) {
	tee, stop := testTee(b, DefaultQueue, 2)
	var drained []chan struct{}
	for _, br := range tee.branches() {
		drained = append(drained, drain(br.ch))
	}
	mainDone := drain(tee.main.ch)
	s := core.NewStream("live/b")
	b.ReportAllocs()
	for b.Loop() {
		p := core.NewPacket(1200)
		p.Stream = s
		tee.Emit(p)
	}
	stop()
	<-mainDone
	for _, d := range drained {
		<-d
	}
	b.ReportMetric(tee.branches()[0].full.Value()+tee.branches()[1].full.Value(), "branch_drops")
}

// The tap adds no allocation per packet: neither when the branches take
// the packet nor when a full branch drops it.
func TestTeeEmitDoesNotAllocate(t *testing.T) {
	if raceOn {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	tee, stop := testTee(t, 1000, 2)
	defer stop()
	s := core.NewStream("live/a")
	emit := func() {
		p := core.NewPacket(1200)
		p.Stream = s
		tee.Emit(p)
		(<-tee.main.ch).Release()
	}
	release := func() {
		for _, b := range tee.branches() {
			(<-b.ch).Release()
		}
	}
	if allocs := testing.AllocsPerRun(100, func() { emit(); release() }); allocs != 0 {
		t.Errorf("%v allocs per packet shared with two branches", allocs)
	}
	for range cap(tee.branches()[0].ch) {
		emit() // fill the branches
	}
	if allocs := testing.AllocsPerRun(100, emit); allocs != 0 {
		t.Errorf("%v allocs per packet two full branches drop", allocs)
	}
	if got := tee.branches()[0].full.Value(); got < 100 {
		t.Errorf("branch_full = %v, want every packet after the queue filled", got)
	}
	for _, b := range tee.branches() {
		for len(b.ch) > 0 {
			(<-b.ch).Release()
		}
	}
}
