package fec

import (
	"context"
	_ "embed"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/reedsolomon"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/control"
	"github.com/mediapipe/mediapipe/core/control/policy"
)

// EncoderConfig is fec-encoder's parameters.
type EncoderConfig struct {
	Overhead    float64       `param:"overhead" default:"0.2" min:"0" max:"1" live:"true" doc:"parity packets per source packet (0.2 with a group of 10: 2 parity per 10); 0 sends no parity. With policy static it applies to every stream; the other policies set each stream's own from the controller's first round on (docs/control.md), this applying until then. Applied on reload"`
	Group       int           `param:"group" default:"16" min:"1" max:"64" doc:"source packets per group; parity follows each group. Larger groups make parity cheaper for the same protection (docs/control.md)"`
	MaxWait     time.Duration `param:"max_wait" default:"40ms" min:"0.001" max:"1" doc:"longest a group stays open: then parity is sent over the packets so far. Bounds the latency FEC adds to a recovery; at 4 Mbit/s a group of 16 fills within 40 ms, at low bitrates groups close short and parity costs more (docs/control.md)"`
	PayloadType int           `param:"payload_type" default:"101" min:"96" max:"127" doc:"RTP payload type of the parity packets; must differ from the media's (rtp-fragmenter's 100) and match fec-decoder's"`
	// The transmission controller (docs/control.md).
	Policy        string        `param:"policy" default:"mean-field" enum:"static,loss-adaptive,mean-field,plugin" doc:"the transmission controller's policy, run once per interval on what the encoder sent and what the edges report (through quic-retransmit in this pipeline): static (overhead for every stream, repair budget shared equally), loss-adaptive (parity from the edges' p90 loss), mean-field (parity, pacing and repair shares minimising the cloud's egress within the latency budget) or plugin (an external policy at path). Its decisions set each stream's overhead, udp-sink's pacing and quic-retransmit's repair shares (docs/control.md)"`
	Path          string        `param:"path" doc:"for policy plugin: the policy plugin executable (relative to the pipeline file's directory); see docs/plugins.md"`
	Interval      time.Duration `param:"interval" default:"1s" min:"0.05" max:"60" live:"true" doc:"how often the controller decides (edges report about once a second). Applied on reload"`
	LatencyBudget time.Duration `param:"latency_budget" default:"150ms" min:"0.001" max:"10" live:"true" doc:"how long the edges hold a gap for repair (their rtp-reorder latency): the policies keep a group's wait plus an edge's repair round trip within it. Applied on reload"`
}

// Validate checks rules across fields.
func (c *EncoderConfig) Validate() error {
	if int(math.Ceil(c.Overhead*float64(c.Group)-1e-9)) > MaxParity {
		return errors.New("overhead: overhead × group must be at most 32 parity packets per group")
	}
	if c.Policy == policy.NamePlugin && c.Path == "" {
		return errors.New(`path: required when policy = "plugin"`)
	}
	return nil
}

//go:embed encoder.toml
var encoderSample string

func init() {
	core.Register(core.Spec{
		Name:    "fec-encoder",
		Summary: "adds Reed-Solomon parity packets (own SSRC and payload type) after each group of source RTP packets, which pass on at once and unchanged; overhead per stream settable by a controller",
		In:      core.KindRTP,
		Out:     core.KindRTP,
		Sample:  encoderSample,
	}, NewEncoder)
}

// Encoder is a running fec-encoder.
type Encoder struct {
	cfg      EncoderConfig
	env      *core.Env
	pt       uint8
	overhead atomic.Uint64 // float64 bits: the default overhead

	mu      sync.Mutex
	flows   map[*core.Stream]*flow // the live streams, as the controller reads them, with their own overheads
	version atomic.Uint64          // bumped on every change of overhead

	ctl *controller // nil: no controller (a stage built by hand)

	streams map[*core.Stream]*encStream
	codecs  map[[2]int]reedsolomon.Encoder
	timer   core.Timer
	armed   bool
	out     core.Output

	sent        prometheus.Counter
	unprotected *core.DropCounter
}

type encStream struct {
	flow      *flow
	burstTS   uint32 // timestamp of the run of packets now being sent
	burstRun  int    // its bytes so far
	overhead  float64
	version   uint64
	ssrc      uint32
	paritySeq uint16
	n         int    // source packets in the open group
	base      uint16 // the open group's first sequence number
	ts        uint32 // its RTP timestamp
	ingest    int64
	opened    time.Time // when the open group got its first packet
	longest   int       // longest source packet in the group
	vn, vlong int       // no parity sent: packets and the longest of a would-be group
	shards    [][]byte  // group+MaxParity shards of MaxShard capacity, reused
	lens      []int     // each source shard's used length
	stream    *core.Stream
}

// NewEncoder builds a fec-encoder stage.
func NewEncoder(cfg *EncoderConfig, env *core.Env) (core.Stage, error) {
	e := &Encoder{
		cfg:         *cfg,
		env:         env,
		pt:          uint8(cfg.PayloadType),
		flows:       map[*core.Stream]*flow{},
		streams:     map[*core.Stream]*encStream{},
		codecs:      map[[2]int]reedsolomon.Encoder{},
		sent:        env.Metrics.Counter("fec_parity_sent"),
		unprotected: env.Metrics.Drop("fec_unprotected"),
	}
	e.overhead.Store(math.Float64bits(cfg.Overhead))
	e.version.Store(1)       // streams start at 0: their first packet reads the overhead
	if env.Siblings != nil { // a stage built by hand has no pipeline to control
		ctl, err := newController(e, cfg)
		if err != nil {
			return nil, err
		}
		e.ctl = ctl
	}
	return e, nil
}

// Open starts a plugin policy, so a missing or broken plugin stops the
// pipeline before it runs.
func (e *Encoder) Open(context.Context) error {
	if e.ctl == nil {
		return nil
	}
	return e.ctl.open()
}

// Reconfigure applies a new default overhead, controller interval and
// latency budget (the live parameters).
func (e *Encoder) Reconfigure(cfg *EncoderConfig) error {
	e.overhead.Store(math.Float64bits(cfg.Overhead))
	e.version.Add(1)
	if e.ctl != nil {
		e.ctl.reconfigure(cfg)
	}
	return nil
}

// LastTick implements control.Reporter: the controller's latest round.
func (e *Encoder) LastTick() (control.Tick, bool) {
	if e.ctl == nil {
		return control.Tick{}, false
	}
	return e.ctl.lastTick()
}

func (e *Encoder) defaultOverhead() float64 { return math.Float64frombits(e.overhead.Load()) }

// SetOverhead sets stream's overhead (parity packets per source packet,
// clamped to 0..1 and to 32 parity per group), from the next group on; a
// negative v returns the stream to the stage's default. A stream the
// encoder does not carry now (ended, or never seen) is ignored, so no
// entry outlives its stream. Safe to call from any goroutine at any rate:
// it takes a lock the data path takes only after a change.
func (e *Encoder) SetOverhead(stream *core.Stream, v float64) {
	e.mu.Lock()
	f := e.flows[stream]
	if f == nil {
		e.mu.Unlock()
		return
	}
	f.own = !(v < 0 || math.IsNaN(v))
	f.overhead = min(v, 1)
	e.mu.Unlock()
	e.version.Add(1)
}

// Overhead is the overhead stream's groups get now.
func (e *Encoder) Overhead(stream *core.Stream) float64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	if f := e.flows[stream]; f != nil && f.own {
		return f.overhead
	}
	return math.Float64frombits(e.overhead.Load())
}

// overrideCount is how many streams have an overhead of their own (tests).
func (e *Encoder) overrideCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, f := range e.flows {
		if f.own {
			n++
		}
	}
	return n
}

// Run passes source packets on at once and emits parity after each group
// or when a group has waited max_wait.
func (e *Encoder) Run(_ context.Context, in <-chan *core.Packet, out core.Output) error {
	e.out = out
	e.timer = e.env.Clock.NewTimer(time.Hour)
	e.timer.Stop()
	defer e.timer.Stop()
	if e.ctl != nil {
		stop := e.ctl.start()
		defer stop()
	}
	for {
		select {
		case p, ok := <-in:
			if !ok {
				for _, st := range e.streams {
					e.flush(st)
				}
				return nil
			}
			e.handle(p)
		case <-e.timer.C():
			e.armed = false
			e.expire()
		}
	}
}

func (e *Encoder) handle(p *core.Packet) {
	switch p.Event {
	case core.EventStart:
		if e.streams[p.Stream] == nil {
			e.streams[p.Stream] = e.newStream(p.Stream)
		}
		e.out.Emit(p)
		return
	case core.EventEnd:
		if st := e.streams[p.Stream]; st != nil {
			e.flush(st)
			delete(e.streams, p.Stream)
		}
		e.mu.Lock()
		delete(e.flows, p.Stream)
		e.mu.Unlock()
		e.out.Emit(p)
		return
	}
	st := e.streams[p.Stream]
	if st == nil { // data before its start: protect it all the same
		st = e.newStream(p.Stream)
		e.streams[p.Stream] = st
	}
	if v := e.version.Load(); v != st.version { // a stream's first packet, or a change
		st.overhead, st.version = e.Overhead(p.Stream), v
	}
	pt, seq, ts, ssrc, ok := rtpFields(p.Data)
	if !ok || pt == e.pt {
		e.out.Emit(p)
		return
	}
	st.count(len(p.Data), ts, ssrc)
	if st.overhead <= 0 {
		e.out.Emit(p)
		return
	}
	if len(p.Data) > MaxShard-shardPrefix {
		e.unprotected.Inc()
		e.out.Emit(p)
		return
	}
	if st.n > 0 && (ssrc != st.ssrc || seq != st.base+uint16(st.n)) {
		e.flush(st) // a new sender or a jump: the group ends here
	}
	if st.n == 0 {
		st.ssrc, st.base, st.ts, st.ingest, st.longest = ssrc, seq, ts, p.Ingest, 0
		st.opened = e.env.Clock.Now()
		if !e.armed {
			e.timer.Reset(e.cfg.MaxWait)
			e.armed = true
		}
	}
	n := shardPrefix + len(p.Data)
	st.shards[st.n] = resize(st.shards[st.n][:0], n)
	putShard(st.shards[st.n], p.Data)
	st.lens[st.n] = n
	st.longest = max(st.longest, len(p.Data))
	st.n++
	e.out.Emit(p)
	if st.n >= e.cfg.Group {
		e.flush(st)
	}
}

func (e *Encoder) newStream(s *core.Stream) *encStream {
	f := &flow{stream: s}
	e.mu.Lock()
	e.flows[s] = f
	e.mu.Unlock()
	// shard buffers grow to the packets' size on first use, not to MaxShard
	return &encStream{stream: s, flow: f, shards: make([][]byte, e.cfg.Group+MaxParity), lens: make([]int, e.cfg.Group)}
}

// flow is one stream's figures for the controller: counted on the data
// path with atomics (no allocation), read and reset by the controller.
type flow struct {
	stream          *core.Stream
	ssrc            atomic.Uint32
	bytes, packets  atomic.Uint64 // source packets sent
	groups, grouped atomic.Uint64 // groups sent with parity, and their source packets
	parity, parityB atomic.Uint64 // parity packets sent, and their bytes
	// While no parity is sent: groups of `group` packets counted as if it
	// were, and the sum of their longest packets (what parity would cost).
	vgroups, vlongest atomic.Uint64
	burst             atomic.Int64 // largest run of one timestamp since the controller read it
	// The stream's own overhead (SetOverhead), under Encoder.mu: it lives
	// and dies with the stream's other figures.
	overhead float64
	own      bool
}

// count adds a source packet to the stream's figures: a run of packets of
// one RTP timestamp, back to back, is one tag's fragments (a keyframe's
// burst).
func (st *encStream) count(n int, ts, ssrc uint32) {
	f := st.flow
	f.bytes.Add(uint64(n))
	f.packets.Add(1)
	if f.ssrc.Load() != ssrc {
		f.ssrc.Store(ssrc)
	}
	if st.burstRun > 0 && ts == st.burstTS {
		st.burstRun += n
	} else {
		st.burstTS, st.burstRun = ts, n
	}
	if int64(st.burstRun) > f.burst.Load() {
		f.burst.Store(int64(st.burstRun))
	}
	if st.overhead <= 0 {
		st.vn++
		st.vlong = max(st.vlong, n)
		if st.vn >= len(st.lens) {
			f.vgroups.Add(1)
			f.vlongest.Add(uint64(st.vlong))
			st.vn, st.vlong = 0, 0
		}
	}
}

// flush emits parity over the open group, if any, and empties it.
func (e *Encoder) flush(st *encStream) {
	k := st.n
	if k == 0 {
		return
	}
	st.n = 0
	if st.overhead <= 0 { // turned off while the group was open
		return
	}
	m := min(MaxParity, max(1, int(math.Ceil(st.overhead*float64(k)-1e-9))))
	codec := e.codec(k, m)
	if codec == nil {
		return
	}
	l := shardPrefix + st.longest
	shards := st.shards[:k+m]
	for i := range shards {
		if i < k {
			shards[i] = resize(shards[i][:st.lens[i]], l)
			clear(shards[i][st.lens[i]:]) // the padding, zero as the decoder assumes
		} else {
			shards[i] = resize(shards[i][:0], l) // Encode writes it all
		}
	}
	if err := codec.Encode(shards); err != nil {
		e.env.Log.Warn("fec-encoder: encode", "err", err)
		return
	}
	st.flow.groups.Add(1)
	st.flow.grouped.Add(uint64(k))
	st.flow.parity.Add(uint64(m))
	st.flow.parityB.Add(uint64(m * (parityHead + l)))
	for j := 0; j < m; j++ {
		p := core.NewPacket(parityHead + l)
		putParityHeader(p.Data, e.pt, st.paritySeq, st.ts, st.ssrc, st.base, k, m, j, l)
		copy(p.Data[parityHead:], shards[k+j])
		st.paritySeq++
		p.Stream, p.Timestamp, p.Ingest = st.stream, st.ts, st.ingest
		e.sent.Inc()
		e.out.Emit(p)
	}
}

// codec returns the (cached) Reed-Solomon codec for k data and m parity
// shards; at most MaxGroup×MaxParity of them exist.
func (e *Encoder) codec(k, m int) reedsolomon.Encoder {
	key := [2]int{k, m}
	if c, ok := e.codecs[key]; ok {
		return c
	}
	c, err := newCodec(k, m)
	if err != nil {
		e.env.Log.Warn("fec-encoder: codec", "k", k, "m", m, "err", err)
		return nil
	}
	e.codecs[key] = c
	return c
}

// expire flushes every group open for max_wait and re-arms for the rest.
func (e *Encoder) expire() {
	now := e.env.Clock.Now()
	var next time.Duration = -1
	for _, st := range e.streams {
		if st.n == 0 {
			continue
		}
		if left := e.cfg.MaxWait - now.Sub(st.opened); left <= 0 {
			e.flush(st)
		} else if next < 0 || left < next {
			next = left
		}
	}
	if next >= 0 {
		e.timer.Reset(next)
		e.armed = true
	}
}
