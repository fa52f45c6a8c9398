// Package netsim is the netsim stage: it drops, duplicates, reorders and
// delays packets by seeded chance, for tests and demos (like GStreamer's netsim).
package netsim

import (
	"context"
	_ "embed"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediapipe/mediapipe/core"
)

// Config is netsim's parameters.
//
// Loss with bursts: a packet outside a burst starts a loss event with
// probability q = drop / (burst·(1-drop) + drop); the event drops it and the
// burst-1 packets of its stream that follow. That q makes the expected share
// of dropped packets exactly drop for any burst (with burst = 1, q = drop).
//
// Reorder: a passing packet with no packet of its stream already held back
// is held with probability r/(1-r) (r = reorder, at most 1) and sent right
// after the stream's next passing packet, so the expected share of packets
// that arrive after their successor is reorder, up to 0.5 (at 0.5 and above
// every other packet is swapped). A held packet waits for that next packet,
// or for its stream's end.
type Config struct {
	Drop      float64       `param:"drop" default:"0" min:"0" max:"1" doc:"share of packets dropped (expected), counted as simulated_loss"`
	Burst     int           `param:"burst" default:"1" min:"1" max:"100000" doc:"packets dropped in a row per loss event; the loss event rate is lowered so the overall share dropped stays drop"`
	Duplicate float64       `param:"duplicate" default:"0" min:"0" max:"1" doc:"probability that a passing packet is sent twice"`
	Reorder   float64       `param:"reorder" default:"0" min:"0" max:"1" doc:"share of packets held back and sent right after the next packet of their stream (at most 0.5 take effect)"`
	Delay     time.Duration `param:"delay" default:"0s" min:"0" doc:"every packet (and stream event) is delayed by this much"`
	Seed      int64         `param:"seed" default:"0" doc:"random seed; the same seed and input give the same output. 0 picks a random seed"`
	MaxQueue  int           `param:"max_queue" default:"10000" min:"1" doc:"most data packets held for delay; beyond it they are dropped as delay_queue_full"`
}

// Validate checks rules across fields.
func (c *Config) Validate() error {
	if c.Drop >= 1 && c.Burst > 1 {
		return errors.New("burst: must be 1 when drop is 1 (every packet is dropped anyway)")
	}
	return nil
}

// sample is an example [[pipeline.stage]] block for this stage, carried in
// its spec; stages/all checks that it validates.
//
//go:embed sample.toml
var sample string

func init() {
	core.Register(core.Spec{
		Name:    "netsim",
		Summary: "drops (in bursts), duplicates, reorders and delays packets by seeded chance, for tests and demos",
		In:      core.KindRTP,
		Out:     core.KindRTP,
		Sample:  sample,
	}, New)
}

// Stage is a running netsim.
type Stage struct {
	cfg      Config
	env      *core.Env
	rng      *rand.Rand
	lossP    float64 // chance that a packet starts a loss event
	holdP    float64 // chance that a packet is held back
	streams  map[*core.Stream]*streamState
	order    []*core.Stream // streams by first sight, for a deterministic flush
	queue    fifo
	queued   int // data packets in queue
	timer    core.Timer
	timerC   <-chan time.Time
	armed    bool
	out      core.Output
	lost     *core.DropCounter
	full     *core.DropCounter
	dups     prometheus.Counter
	reorders prometheus.Counter
	depth    prometheus.Gauge
}

type streamState struct {
	held      *core.Packet
	heldDup   bool
	burstLeft int
}

// New builds a netsim stage.
func New(cfg *Config, env *core.Env) (core.Stage, error) {
	seed := uint64(cfg.Seed)
	if seed == 0 {
		seed = rand.Uint64()
		// logged so that a run worth replaying can be: set seed to it
		env.Log.Info("netsim random seed", "seed", int64(seed))
	}
	s := &Stage{
		cfg:      *cfg,
		env:      env,
		rng:      rand.New(rand.NewPCG(seed, 0x6e657473696d)),
		streams:  map[*core.Stream]*streamState{},
		lost:     env.Metrics.Drop("simulated_loss"),
		full:     env.Metrics.Drop("delay_queue_full"),
		dups:     env.Metrics.Counter("duplicated"),
		reorders: env.Metrics.Counter("reordered"),
		depth:    env.Metrics.Gauge("delay_queue"),
	}
	if d, b := cfg.Drop, float64(cfg.Burst); d > 0 {
		s.lossP = d / (b*(1-d) + d)
	}
	if r := cfg.Reorder; r >= 0.5 {
		s.holdP = 1
	} else {
		s.holdP = r / (1 - r)
	}
	return s, nil
}

// Run passes packets on until in closes; then it sends on at once whatever
// it still holds, in order.
func (s *Stage) Run(_ context.Context, in <-chan *core.Packet, out core.Output) error {
	s.out = out
	if s.cfg.Delay > 0 {
		s.timer = s.env.Clock.NewTimer(time.Hour)
		s.timer.Stop()
		s.timerC = s.timer.C()
		defer s.timer.Stop()
	}
	for {
		select {
		case p, ok := <-in:
			if !ok {
				s.flush()
				return nil
			}
			s.handle(p)
		case <-s.timerC:
			s.armed = false
			s.release()
		}
	}
}

func (s *Stage) handle(p *core.Packet) {
	st := s.streams[p.Stream]
	if st == nil && p.Event != core.EventEnd {
		st = &streamState{}
		s.streams[p.Stream] = st
		s.order = append(s.order, p.Stream)
	}
	switch p.Event {
	case core.EventStart:
		s.send(p)
	case core.EventEnd:
		if st != nil {
			s.sendHeld(st)
			delete(s.streams, p.Stream)
			for i, o := range s.order {
				if o == p.Stream {
					s.order = append(s.order[:i], s.order[i+1:]...)
					break
				}
			}
		}
		s.send(p) // after the held packet and, through the queue, after all delayed data
	default:
		s.data(st, p)
	}
}

func (s *Stage) data(st *streamState, p *core.Packet) {
	switch {
	case st.burstLeft > 0:
		st.burstLeft--
		s.lost.Inc()
		p.Release()
		return
	case s.lossP > 0 && s.rng.Float64() < s.lossP:
		st.burstLeft = s.cfg.Burst - 1
		s.lost.Inc()
		p.Release()
		return
	}
	dup := s.cfg.Duplicate > 0 && s.rng.Float64() < s.cfg.Duplicate
	if st.held == nil && s.holdP > 0 && s.rng.Float64() < s.holdP {
		st.held, st.heldDup = p, dup
		return
	}
	s.sendMaybeDup(p, dup)
	if st.held != nil {
		s.reorders.Inc() // counted once it really went out after its successor
		s.sendHeld(st)
	}
}

func (s *Stage) sendHeld(st *streamState) {
	if st.held != nil {
		s.sendMaybeDup(st.held, st.heldDup)
		st.held = nil
	}
}

func (s *Stage) sendMaybeDup(p *core.Packet, dup bool) {
	if !dup {
		s.send(p)
		return
	}
	c := p.Clone() // before p changes owner
	s.dups.Inc()
	s.send(p)
	s.send(c)
}

// send emits p now, or queues it for the delay. Stream events always find
// room; data beyond max_queue is dropped.
func (s *Stage) send(p *core.Packet) {
	if s.cfg.Delay <= 0 {
		s.out.Emit(p)
		return
	}
	if p.Event == core.EventData {
		if s.queued >= s.cfg.MaxQueue {
			s.full.Inc()
			p.Release()
			return
		}
		s.queued++
	}
	s.queue.push(entry{p: p, due: s.env.Clock.Now().Add(s.cfg.Delay)})
	s.depth.Set(float64(s.queue.n))
	if !s.armed {
		s.arm()
	}
}

// arm sets the timer for the queue's head. One delay for all means the queue
// is in due order, so only the head needs a timer.
func (s *Stage) arm() {
	if s.queue.n == 0 {
		return
	}
	s.timer.Reset(s.queue.peek().due.Sub(s.env.Clock.Now()))
	s.armed = true
}

// release emits every queued packet that is due and re-arms for the rest.
func (s *Stage) release() {
	now := s.env.Clock.Now()
	for s.queue.n > 0 && !s.queue.peek().due.After(now) {
		s.emitQueued(s.queue.pop().p)
	}
	s.depth.Set(float64(s.queue.n))
	s.arm()
}

func (s *Stage) emitQueued(p *core.Packet) {
	if p.Event == core.EventData {
		s.queued--
	}
	s.out.Emit(p)
}

// flush sends on everything still held: delayed packets first (they are
// older), then packets held back for reordering, stream by stream.
func (s *Stage) flush() {
	for s.queue.n > 0 {
		s.emitQueued(s.queue.pop().p)
	}
	s.cfg.Delay = 0
	for _, st := range s.order {
		s.sendHeld(s.streams[st])
	}
	s.depth.Set(0)
}

type entry struct {
	p   *core.Packet
	due time.Time
}

// fifo is a growable ring of entries: no allocation once it has grown to
// the largest backlog.
type fifo struct {
	buf  []entry
	head int
	n    int
}

func (f *fifo) push(e entry) {
	if f.n == len(f.buf) {
		buf := make([]entry, max(64, 2*len(f.buf)))
		for i := 0; i < f.n; i++ {
			buf[i] = f.buf[(f.head+i)%len(f.buf)]
		}
		f.buf, f.head = buf, 0
	}
	f.buf[(f.head+f.n)%len(f.buf)] = e
	f.n++
}

func (f *fifo) peek() *entry { return &f.buf[f.head] }

func (f *fifo) pop() entry {
	e := f.buf[f.head]
	f.buf[f.head] = entry{}
	f.head = (f.head + 1) % len(f.buf)
	f.n--
	return e
}
