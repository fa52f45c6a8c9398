package host

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediapipe/mediapipe/core"
)

// QueueWait bounds how long a data packet that finds the next stage's queue
// full waits for room. A burst longer than the queue (the fragments of one
// big keyframe, which already carry sequence numbers) then reaches the next
// stage instead of leaving a gap nobody can repair; a stuck stage costs its
// producer at most this once, after which the queue counts as congested and
// drops at once until it has drained to half.
const QueueWait = 100 * time.Millisecond

// chanOutput is the queue between two stages.
type chanOutput struct {
	closed atomic.Bool
	ch     chan *core.Packet
	out    prometheus.Counter
	in     prometheus.Counter
	full   *core.DropCounter
	gone   *core.DropCounter
	hard   chan struct{}
	track  *Pipeline // the source's output records streams for status
	log    *slog.Logger
	wait   time.Duration // QueueWait; 0 drops a data packet at once on a full queue
	// state is 0 while the queue has room, the monotonic time (ns since
	// monoBase, > 0) it was first found full and has not drained since, or
	// congested once a wait timed out. Only the slow path writes it; the
	// fast path reads it once.
	state atomic.Int64
}

const congested = -1

// monoBase anchors the monotonic clock for chanOutput.state.
var monoBase = time.Now()

// timers are reused by waiting emits, so a wait does not allocate.
var timers = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}}

func (o *chanOutput) Emit(p *core.Packet) {
	o.out.Inc()
	if o.track != nil {
		o.observe(p)
	}
	if o.closed.Load() {
		o.gone.Inc()
		p.Release()
		return
	}
	// No lock per packet: the queue closes only after the stage's Run has
	// returned, and by contract nothing of the stage emits after that. A
	// stage that breaks the contract races the close; its packet is
	// counted as stage_stopped instead of crashing the process.
	defer func() {
		if recover() != nil {
			o.gone.Inc()
			p.Release()
		}
	}()
	if p.Event == core.EventData {
		select {
		case o.ch <- p:
			o.in.Inc()
			if st := o.state.Load(); st != 0 && len(o.ch) <= cap(o.ch)/2 {
				o.state.CompareAndSwap(st, 0) // drained: the next full queue may wait again
			}
		default:
			o.waitData(p)
		}
		return
	}
	select {
	case o.ch <- p:
		o.in.Inc()
	case <-o.hard:
		o.full.Inc()
		p.Release()
	}
}

// waitData is the slow path of a data packet that found the queue full: it
// waits for room for what is left of o.wait since the queue was first found
// full, or drops the packet at once if the queue is congested.
func (o *chanOutput) waitData(p *core.Packet) {
	st := o.state.Load()
	if st == congested || o.wait <= 0 {
		o.full.Inc()
		p.Release()
		return
	}
	now := int64(time.Since(monoBase)) + 1 // > 0: 0 means "has room"
	if st == 0 {
		if o.state.CompareAndSwap(0, now) {
			st = now
		} else if st = o.state.Load(); st <= 0 {
			st = now // drained or congested meanwhile: this packet gets its own wait
		}
	}
	left := o.wait - time.Duration(now-st)
	if left <= 0 {
		o.state.Store(congested)
		o.full.Inc()
		p.Release()
		return
	}
	t := timers.Get().(*time.Timer)
	t.Reset(left)
	select {
	case o.ch <- p:
		o.in.Inc()
	case <-t.C:
		o.state.Store(congested)
		o.full.Inc()
		p.Release()
	case <-o.hard:
		o.full.Inc()
		p.Release()
	}
	t.Stop() // Go ≥ 1.23: after Stop no stale tick is left in t.C
	timers.Put(t)
}

func (o *chanOutput) observe(p *core.Packet) {
	s := p.Stream
	if s == nil {
		return
	}
	switch p.Event {
	case core.EventData:
		s.Packets.Add(1)
		s.Bytes.Add(uint64(len(p.Data)))
	case core.EventStart:
		// Sources log their own start and end lines with what they know
		// (publisher address, SSRC); these are for plugin sources and debugging.
		o.track.streamStarted(s)
		o.log.Debug("stream started", "stream", s.Name, "id", s.ID)
	case core.EventEnd:
		if o.track.streamEnded(s) {
			o.log.Debug("stream ended", "stream", s.Name, "id", s.ID, "packets", s.Packets.Load(), "bytes", s.Bytes.Load(), "duration", time.Since(s.Started).Round(time.Millisecond))
		}
	}
}

// Close marks the queue closed and closes the channel, so the reader drains
// what is queued and then sees the end.
func (o *chanOutput) Close() {
	if !o.closed.Swap(true) {
		close(o.ch)
	}
}

type discard struct{ d *core.DropCounter }

func (d discard) Emit(p *core.Packet) {
	if p.Event == core.EventData {
		d.d.Inc()
	}
	p.Release()
}
