// Package flvreassembler is the flv-reassembler stage: it joins RTP fragments
// back into FLV tags, dropping (and counting) any tag that is not whole.
package flvreassembler

import (
	"context"
	_ "embed"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/media/rtpflv"
	"github.com/mediapipe/mediapipe/core/media/rtpheader"
)

// Config is flv-reassembler's parameters.
type Config struct {
	MaxTagSize int `param:"max_tag_size" default:"16777215" min:"1" max:"16777215" doc:"largest FLV tag body in bytes a tag header may declare; a bigger tag is dropped (counted as oversize) and never buffered"`
}

// sample is an example [[pipeline.stage]] block for this stage, carried in
// its spec; stages/all checks that it validates.
//
//go:embed sample.toml
var sample string

func init() {
	core.Register(core.Spec{
		Name:    "flv-reassembler",
		Summary: "joins RTP fragments back into FLV tags; a tag with a missing fragment, or whose header disagrees with its fragments, is dropped whole and counted",
		In:      core.KindRTP,
		Out:     core.KindFLV,
		Sample:  sample,
		Mutates: true, // a one-packet tag is moved down within the RTP packet's buffer
	}, New)
}

// Stage is a running flv-reassembler.
type Stage struct {
	cfg     Config
	env     *core.Env
	drops   [rtpflv.NumReasons]*core.DropCounter
	unknown *core.DropCounter
	onDrop  func(rtpflv.Reason)
	streams map[*core.Stream]*stream
	active  prometheus.Gauge
	// Each stream's latency from the cloud's send to here (repairs
	// included), for the per-stream metrics.
	latencies core.LatencySet
}

// stream is one stream's reassembly and timeline. A stream whose SSRC
// changes goes on from another cloud (udp-source continued it: the primary's
// publisher came back through a standby), which starts its own timeline:
// its timestamps are shifted to go on one frame interval after the last
// tag sent, never below it, so players see one continuous stream.
type stream struct {
	r         rtpflv.Reassembler
	ssrc      uint32
	seen      bool   // a tag went out: ssrc is its SSRC
	shifted   bool   // offset applies (after a change of SSRC)
	offset    uint32 // added to the current SSRC's timestamps
	floor     uint32 // the last timestamp before the change
	last      uint32 // largest timestamp sent
	lastVideo uint32
	gap       uint32 // the video frame interval seen last
	latency   core.StreamLatency
}

// defaultGap is the step across a change of SSRC before a frame interval is measured (25 fps).
const defaultGap = 40

// retime maps a tag of ssrc at ts onto the stream's timeline.
func (st *stream) retime(ssrc uint32, typ uint8, ts uint32) uint32 {
	first := !st.seen
	if st.seen && ssrc != st.ssrc {
		st.offset, st.floor, st.shifted = st.last+st.gap-ts, st.last, true
	}
	st.ssrc, st.seen = ssrc, true
	if st.shifted {
		if ts += st.offset; int32(ts-st.floor) < 0 {
			ts = st.floor
		}
	}
	if first || int32(ts-st.last) > 0 { // the first may be ≥ 2^31
		st.last = ts
	}
	if typ == flv.TypeVideo {
		if d := ts - st.lastVideo; d > 0 && d <= 1000 {
			st.gap = d
		}
		st.lastVideo = ts
	}
	return ts
}

// ReportLatency reports each stream's latency (core.LatencyReporter).
func (s *Stage) ReportLatency(report func(stream string, l *core.StreamLatency)) {
	s.latencies.Each(report)
}

// maxLatency bounds what is taken for a latency: beyond it the sender's
// clock and the timestamps do not belong together (a new sender's report
// not yet in), or the clocks are far apart.
const maxLatency = time.Minute

// New builds an flv-reassembler.
func New(cfg *Config, env *core.Env) (core.Stage, error) {
	return newStage(cfg, env), nil
}

func newStage(cfg *Config, env *core.Env) *Stage {
	s := &Stage{
		cfg:     *cfg,
		env:     env,
		unknown: env.Metrics.Drop("unknown_stream"),
		streams: map[*core.Stream]*stream{},
		active:  env.Metrics.Gauge("streams"),
	}
	for r := range s.drops {
		s.drops[r] = env.Metrics.Drop(rtpflv.Reason(r).String())
	}
	s.onDrop = func(r rtpflv.Reason) { s.drops[r].Inc() }
	return s
}

// Run reassembles until in closes.
func (s *Stage) Run(_ context.Context, in <-chan *core.Packet, out core.Output) error {
	for p := range in {
		s.handle(p, out)
	}
	for st, r := range s.streams { // input closed without ends: count what was cut off
		r.r.Flush()
		delete(s.streams, st)
	}
	s.active.Set(0)
	return nil
}

func (s *Stage) handle(p *core.Packet, out core.Output) {
	switch p.Event {
	case core.EventStart:
		if _, ok := s.streams[p.Stream]; !ok {
			st := &stream{r: rtpflv.Reassembler{MaxTagSize: s.cfg.MaxTagSize, OnDrop: s.onDrop}, gap: defaultGap}
			s.streams[p.Stream] = st
			s.latencies.Add(p.Stream, &st.latency)
			s.active.Set(float64(len(s.streams)))
		}
		out.Emit(p)
	case core.EventEnd:
		if r := s.streams[p.Stream]; r != nil {
			r.r.Flush() // a tag cut off by the end is counted, never emitted
			delete(s.streams, p.Stream)
			s.latencies.Remove(p.Stream)
			s.active.Set(float64(len(s.streams)))
		}
		out.Emit(p)
	default:
		s.push(p, out)
	}
}

// push feeds one RTP packet to its stream's reassembler. A finished tag goes
// out in p itself when p's buffer can hold it, else in a pooled packet.
func (s *Stage) push(p *core.Packet, out core.Output) {
	r := s.streams[p.Stream]
	if r == nil {
		s.unknown.Inc()
		p.Release()
		return
	}
	tag := r.r.Push(p.Data)
	if tag == nil {
		p.Release()
		return
	}
	h, _ := flv.ParseHeader(tag)   // the reassembler checked it
	ssrc := rtpheader.SSRC(p.Data) // and p's RTP header, not yet overwritten
	ts := r.retime(ssrc, h.Type, h.Timestamp)
	q := p
	if len(tag) <= cap(p.Data) {
		p.Data = p.Data[:len(tag)]
		copy(p.Data, tag) // may overlap: a one-packet tag sits in p's payload
	} else {
		q = core.NewPacket(len(tag))
		copy(q.Data, tag)
		q.Stream, q.Ingest = p.Stream, p.Ingest
		p.Release()
	}
	if ts != h.Timestamp {
		flv.PutHeader(q.Data, h.Type, h.DataSize, ts)
	}
	q.Type, q.Timestamp = h.Type, ts
	// The latency is the sender's: its own timestamp, as its reports map it.
	if d, ok := q.Stream.SinceSent(ssrc, h.Timestamp, time.Now()); ok && d > -maxLatency && d < maxLatency {
		r.latency.Observe(max(d, time.Microsecond)) // 0 reads as none yet
	}
	out.Emit(q)
}
