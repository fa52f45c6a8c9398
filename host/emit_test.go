package host

import (
	"testing"

	"github.com/mediapipe/mediapipe/core"
)

// BenchmarkEmit is the cost the runtime adds per packet between two stages:
// counters, the closed check and the channel send (the reader drains on
// another goroutine).
func BenchmarkEmit(b *testing.B) {
	m := core.NewMetrics()
	up, down := m.Stage("b", 1, "up"), m.Stage("b", 2, "down")
	benchEmit(b, &chanOutput{ch: make(chan *core.Packet, DefaultQueue), out: up.Out, in: down.In,
		full: down.Drop("queue_full"), gone: down.Drop("stage_stopped"), hard: make(chan struct{})})
}

// benchEmit emits 1200-byte packets into o while a reader releases them.
func benchEmit(b *testing.B, o *chanOutput) {
	done := make(chan struct{})
	go func() {
		for p := range o.ch {
			p.Release()
		}
		close(done)
	}()
	s := core.NewStream("live/b")
	b.ReportAllocs()
	for b.Loop() {
		p := core.NewPacket(1200)
		p.Stream = s
		o.Emit(p)
	}
	o.Close()
	<-done
}

// A stage that emits after its queue closed loses the packet, counted, and
// does not crash the process.
func TestEmitAfterCloseIsCounted(t *testing.T) {
	m := core.NewMetrics()
	st := m.Stage("t", 2, "down")
	o := &chanOutput{ch: make(chan *core.Packet, 1), out: st.Out, in: st.In,
		full: st.Drop("queue_full"), gone: st.Drop("stage_stopped"), hard: make(chan struct{})}
	o.Close()
	o.Emit(core.NewPacket(10))
	o.Emit(core.NewEvent(core.EventEnd, core.NewStream("x")))
	if got := o.gone.Value(); got != 2 {
		t.Fatalf("stage_stopped = %v, want 2", got)
	}
}
