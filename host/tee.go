package host

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediapipe/mediapipe/core"
)

// teeOutput is the output of a stage that carries an id: each packet goes
// to every branch attached at the time, shared read-only, and then, itself,
// to the stage's own next stage, which sees exactly what it would without
// the branches. A branch never makes the stage wait: see branchOutput.
//
// Branches attach and detach while the stage runs (a reload adding or
// removing a pipeline with from): data packets read the branch set with
// one atomic load; start and end events, attach and detach take mu, so a
// branch attached mid-stream is first given a start for each stream live at
// the stage, and never sees a stream's data before its start.
type teeOutput struct {
	main *chanOutput
	// mutatesAfter: a stage after the tapped one in its own pipeline
	// writes into packet bytes, so branches that read share one copy.
	mutatesAfter bool
	set          atomic.Pointer[teeSet]

	mu     sync.Mutex
	live   map[*core.Stream]struct{} // streams started and not ended at the stage
	closed bool
}

// teeSet is an immutable set of branches; a change replaces it.
type teeSet struct {
	branches []*branchOutput
	// copyShared: the branches that only read share one copy, not the
	// original, because the stage's own pipeline writes into it.
	copyShared bool
}

func newTee(main *chanOutput, mutatesAfter bool) *teeOutput {
	t := &teeOutput{main: main, mutatesAfter: mutatesAfter, live: map[*core.Stream]struct{}{}}
	t.set.Store(&teeSet{})
	return t
}

// branches returns the branches attached now.
func (t *teeOutput) branches() []*branchOutput { return t.set.Load().branches }

func (t *teeOutput) Emit(p *core.Packet) {
	if p.Event == core.EventData {
		t.fanout(p, t.set.Load())
		t.main.Emit(p)
		return
	}
	t.mu.Lock()
	if p.Event == core.EventStart {
		t.live[p.Stream] = struct{}{}
	} else {
		delete(t.live, p.Stream)
	}
	t.fanout(p, t.set.Load()) // a branch holds events back rather than wait
	t.mu.Unlock()
	t.main.Emit(p) // may wait for room: not under mu
}

func (t *teeOutput) fanout(p *core.Packet, set *teeSet) {
	if len(set.branches) == 0 {
		return
	}
	base := p
	if set.copyShared {
		base = p.Clone()
	}
	for _, b := range set.branches {
		if b.mutates {
			b.emit(p.Clone()) // it writes into the bytes: its own copy
		} else {
			b.emit(base.Share())
		}
	}
	if base != p {
		base.Release()
	}
}

// attach adds branch b: it first gets a start for every stream live at the
// stage. A tee already closed closes b at once.
func (t *teeOutput) attach(b *branchOutput) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		b.Close()
		return
	}
	for s := range t.live {
		b.emit(core.NewEvent(core.EventStart, s))
	}
	old := t.set.Load()
	next := &teeSet{branches: append(slices.Clone(old.branches), b)}
	next.copyShared = old.copyShared || !b.mutates && t.mutatesAfter
	t.set.Store(next)
}

// detach removes branch b and closes it after an end for each stream it
// has live, so its stages finish those streams as at shutdown. It reports
// whether b was attached.
func (t *teeOutput) detach(b *branchOutput) bool {
	t.mu.Lock()
	old := t.set.Load()
	i := slices.Index(old.branches, b)
	if i >= 0 {
		next := &teeSet{branches: slices.Delete(slices.Clone(old.branches), i, i+1)}
		for _, o := range next.branches {
			next.copyShared = next.copyShared || !o.mutates && t.mutatesAfter
		}
		t.set.Store(next)
	}
	t.mu.Unlock()
	b.endStreams.Store(true)
	b.Close()
	return i >= 0
}

// Close ends the stage's own next stage first, then each branch once the
// events it holds back are delivered.
func (t *teeOutput) Close() {
	t.main.Close()
	t.mu.Lock()
	t.closed = true
	set := t.set.Load()
	t.mu.Unlock()
	for _, b := range set.branches {
		b.Close()
	}
}

// branchOutput is the queue in front of a branch's first stage. The tapped
// stage never waits on it: a data packet that finds the queue full is
// dropped and counted (branch_full). A start or end event is never dropped:
// one that finds the queue full, or finds earlier events still held back,
// is held back in order and delivered by the branch's pump goroutine, which
// alone waits on the branch; meanwhile data is dropped, so nothing of a
// stream reaches the branch before its start. Held-back events stay
// bounded: the end of a stream whose start is still held back cancels it
// (the branch never sees that stream at all), so each stream holds back at
// most one event.
type branchOutput struct {
	pipeline *Pipeline // the branch, whose streams /api/streams lists
	ch       chan *core.Packet
	in       prometheus.Counter
	full     *core.DropCounter
	mutates  bool          // a stage of the branch writes into packet bytes
	hard     chan struct{} // closed when shutdown stops waiting on stuck queues
	// endStreams: the branch was detached while its streams go on; the
	// pump ends each stream it delivered a start of before closing.
	endStreams atomic.Bool

	mu       sync.Mutex
	held     []*core.Packet // events waiting for the pump, in order
	inflight *core.Packet   // the event the pump is delivering
	closed   bool
	kick     chan struct{} // capacity 1: the pump has work or must close
	done     chan struct{} // closed when the pump has returned
}

func newBranchOutput(p *Pipeline, first *RunningStage, mutates bool) *branchOutput {
	return &branchOutput{
		pipeline: p,
		ch:       first.in,
		in:       first.Env.Metrics.In,
		full:     first.Env.Metrics.Drop("branch_full"),
		mutates:  mutates,
		kick:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
}

func (b *branchOutput) emit(p *core.Packet) {
	b.mu.Lock()
	if b.closed { // a stage emitting after its Run returned: contract broken
		b.mu.Unlock()
		b.full.Inc()
		p.Release()
		return
	}
	if len(b.held) == 0 && b.inflight == nil {
		ev, s := p.Event, p.Stream // p is the branch's once sent
		select {
		case b.ch <- p:
			b.mu.Unlock()
			b.in.Inc()
			b.track(ev, s)
			return
		default:
		}
	}
	if p.Event == core.EventData {
		b.mu.Unlock()
		b.full.Inc()
		p.Release()
		return
	}
	b.hold(p)
	b.mu.Unlock()
	b.wake()
}

// hold queues event p for the pump; b.mu is held. An end cancels its
// stream's start if that is still held back.
func (b *branchOutput) hold(p *core.Packet) {
	if p.Event == core.EventEnd {
		for i, h := range b.held {
			if h.Stream == p.Stream && h.Event == core.EventStart {
				b.held = append(b.held[:i], b.held[i+1:]...)
				h.Release()
				p.Release()
				return
			}
		}
	}
	b.held = append(b.held, p)
}

func (b *branchOutput) wake() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// Close lets the pump deliver what is held back, then close the branch's
// queue so its stages drain and end in turn.
func (b *branchOutput) Close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.wake()
}

// pump delivers held-back events, waiting on the branch as long as it takes
// (until shutdown stops waiting: then they are dropped and counted), and
// closes the branch's queue after Close. It returns only after Close.
func (b *branchOutput) pump() {
	defer close(b.done)
	for {
		b.mu.Lock()
		if len(b.held) == 0 {
			closed := b.closed
			b.mu.Unlock()
			if closed {
				if b.endStreams.Load() {
					b.endLive()
				}
				close(b.ch)
				return
			}
			<-b.kick
			continue
		}
		p := b.held[0]
		b.held = append(b.held[:0], b.held[1:]...)
		b.inflight = p
		b.mu.Unlock()
		ev, s := p.Event, p.Stream
		select {
		case b.ch <- p:
			b.in.Inc()
			b.track(ev, s)
		case <-b.hard:
			b.full.Inc()
			p.Release()
		}
		b.mu.Lock()
		b.inflight = nil
		b.mu.Unlock()
	}
}

// endLive delivers an end for each stream the branch has live. Only the
// pump calls it, once the branch is closed and holds nothing back, so no
// other start or end can reach the branch meanwhile.
func (b *branchOutput) endLive() {
	b.pipeline.mu.Lock()
	var live []*core.Stream
	for s := range b.pipeline.streams {
		live = append(live, s)
	}
	b.pipeline.mu.Unlock()
	for _, s := range live {
		end := core.NewEvent(core.EventEnd, s)
		select {
		case b.ch <- end:
			b.in.Inc()
			b.track(core.EventEnd, s)
		case <-b.hard:
			b.full.Inc()
			end.Release()
		}
	}
}

// track records the branch's live streams for /api/streams. The packet and
// byte counts stay the source's.
func (b *branchOutput) track(ev core.Event, s *core.Stream) {
	switch ev {
	case core.EventStart:
		b.pipeline.streamStarted(s)
	case core.EventEnd:
		b.pipeline.streamEnded(s)
	}
}
