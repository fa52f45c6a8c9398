package host

import (
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
)

func waitingOutput(m *core.Metrics, queue int, wait time.Duration) *chanOutput {
	up, down := m.Stage("w", 1, "up"), m.Stage("w", 2, "down")
	return &chanOutput{ch: make(chan *core.Packet, queue), out: up.Out, in: down.In,
		full: down.Drop("queue_full"), gone: down.Drop("stage_stopped"), hard: make(chan struct{}), wait: wait}
}

// The fragments of one keyframe bigger than the queue, emitted in one burst
// while the next stage is briefly busy (here: starts reading 20 ms late),
// all reach it: they already carry sequence numbers, so a drop here would be
// a gap the repair cache never saw.
func TestBurstLongerThanQueueWaitsForRoom(t *testing.T) {
	o := waitingOutput(core.NewMetrics(), DefaultQueue, QueueWait)
	const burst = 1088 // a 1.28 MB tag in 1180-byte fragments
	got := make(chan int)
	go func() {
		time.Sleep(20 * time.Millisecond)
		n := 0
		for p := range o.ch {
			if int(p.Data[0])|int(p.Data[1])<<8 != n {
				t.Errorf("packet %d arrived as %d", int(p.Data[0])|int(p.Data[1])<<8, n)
			}
			n++
			p.Release()
		}
		got <- n
	}()
	s := core.NewStream("live/big")
	for i := range burst {
		p := core.NewPacket(1200)
		p.Data[0], p.Data[1], p.Stream = byte(i), byte(i>>8), s
		o.Emit(p)
	}
	o.Close()
	if n := <-got; n != burst {
		t.Fatalf("%d of %d packets reached the next stage", n, burst)
	}
	if d := o.full.Value(); d != 0 {
		t.Fatalf("queue_full drops %v, want 0", d)
	}
}

// A next stage that never reads costs the producer one bounded wait, then
// packets are dropped at once and counted; once the queue has drained to
// half, a full queue waits again.
func TestStuckStageCostsOneBoundedWait(t *testing.T) {
	const wait = 50 * time.Millisecond
	o := waitingOutput(core.NewMetrics(), 16, wait)
	s := core.NewStream("live/stuck")
	emit := func(n int) time.Duration {
		t0 := time.Now()
		for range n {
			p := core.NewPacket(10)
			p.Stream = s
			o.Emit(p)
		}
		return time.Since(t0)
	}
	if d := emit(10000); d < wait || d > wait+time.Second {
		t.Fatalf("10000 emits into a stuck queue took %s, want about %s", d, wait)
	}
	if d := o.full.Value(); d != 10000-16 {
		t.Fatalf("queue_full drops %v, want %d", d, 10000-16)
	}
	// Still congested: no more waiting.
	if d := emit(1000); d > wait/2 {
		t.Fatalf("congested queue made the producer wait %s", d)
	}
	// Drain below half: the next burst may wait again, and a reader that
	// comes back within the wait gets all of it.
	for range 9 {
		(<-o.ch).Release()
	}
	if d := emit(1); d > wait/2 {
		t.Fatalf("emit into a queue with room took %s", d)
	}
	before := o.full.Value()
	go func() {
		time.Sleep(wait / 5)
		for range 99 {
			(<-o.ch).Release()
		}
	}()
	emit(100 - 9)
	if d := o.full.Value() - before; d != 0 {
		t.Fatalf("%v drops after the queue drained; want the wait back", d)
	}
}

// The slow path allocates nothing either (pooled timer).
func TestWaitingEmitDoesNotAllocate(t *testing.T) {
	if raceOn {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	o := waitingOutput(core.NewMetrics(), 1, time.Millisecond)
	s := core.NewStream("live/a")
	p0 := core.NewPacket(10)
	p0.Stream = s
	o.Emit(p0) // fills the queue
	allocs := testing.AllocsPerRun(100, func() {
		o.state.Store(0) // every run waits, times out and drops
		p := core.NewPacket(10)
		p.Stream = s
		o.Emit(p)
	})
	if allocs != 0 {
		t.Fatalf("%v allocs per waiting emit", allocs)
	}
}

// BenchmarkEmitWithWait is BenchmarkEmit with the runtime's QueueWait set:
// the fast path pays one atomic load more, and a full queue waits (pooled
// timer) instead of dropping.
func BenchmarkEmitWithWait(b *testing.B) {
	o := waitingOutput(core.NewMetrics(), DefaultQueue, QueueWait)
	benchEmit(b, o)
	b.ReportMetric(o.full.Value(), "drops")
}
