// Package rtpfragmenter is the rtp-fragmenter stage: it wraps each FLV tag in
// RTP as docs/protocol.md's wire format says (rtpflv), one random SSRC per
// stream.
package rtpfragmenter

import (
	"context"
	_ "embed"
	"math/rand/v2"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/media/rtpflv"
	"github.com/mediapipe/mediapipe/core/media/rtpheader"
)

// Config is rtp-fragmenter's parameters.
type Config struct {
	MaxPayload  int `param:"max_payload" default:"1180" min:"200" max:"65000" doc:"largest RTP payload in bytes; a longer FLV tag is split into packets of exactly this size (the last shorter). Keep 12 + max_payload under the path MTU"`
	PayloadType int `param:"payload_type" default:"100" min:"96" max:"127" doc:"RTP payload type; 96-127 so RTCP multiplexed on the same port (RFC 5761) never collides"`
}

// sample is an example [[pipeline.stage]] block for this stage, carried in
// its spec; stages/all checks that it validates.
//
//go:embed sample.toml
var sample string

func init() {
	core.Register(core.Spec{
		Name:    "rtp-fragmenter",
		Summary: "wraps each FLV tag in RTP: one packet per tag, split over several when longer than max_payload (marker on the last); one random SSRC per stream",
		In:      core.KindFLV,
		Out:     core.KindRTP,
		Sample:  sample,
	}, New)
}

// Stage is a running rtp-fragmenter.
type Stage struct {
	cfg     Config
	env     *core.Env
	badTag  *core.DropCounter
	unknown *core.DropCounter
	streams map[*core.Stream]*rtpflv.Fragmenter
	active  prometheus.Gauge
}

// New builds an rtp-fragmenter.
func New(cfg *Config, env *core.Env) (core.Stage, error) {
	return newStage(cfg, env), nil
}

func newStage(cfg *Config, env *core.Env) *Stage {
	return &Stage{
		cfg:     *cfg,
		env:     env,
		badTag:  env.Metrics.Drop("bad_tag"),
		unknown: env.Metrics.Drop("unknown_stream"),
		streams: map[*core.Stream]*rtpflv.Fragmenter{},
		active:  env.Metrics.Gauge("streams"),
	}
}

// Run fragments tags until in closes.
func (s *Stage) Run(_ context.Context, in <-chan *core.Packet, out core.Output) error {
	for p := range in {
		s.handle(p, out)
	}
	return nil
}

func (s *Stage) handle(p *core.Packet, out core.Output) {
	switch p.Event {
	case core.EventStart:
		if _, ok := s.streams[p.Stream]; !ok {
			f := &rtpflv.Fragmenter{
				SSRC:        s.newSSRC(),
				Seq:         uint16(rand.Uint32()),
				PayloadType: uint8(s.cfg.PayloadType),
				MaxPayload:  s.cfg.MaxPayload,
			}
			s.streams[p.Stream] = f
			s.active.Set(float64(len(s.streams)))
			s.env.Log.Debug("rtp stream", "stream", p.Stream.Name, "ssrc", f.SSRC, "first_seq", f.Seq)
		}
		out.Emit(p)
	case core.EventEnd:
		delete(s.streams, p.Stream)
		s.active.Set(float64(len(s.streams)))
		out.Emit(p)
	default:
		s.fragment(p, out)
	}
}

// newSSRC picks a random SSRC no other live stream of this stage uses.
func (s *Stage) newSSRC() uint32 {
	for {
		ssrc := rand.Uint32()
		if ssrc == 0 {
			continue
		}
		taken := false
		for _, f := range s.streams {
			taken = taken || f.SSRC == ssrc
		}
		if !taken {
			return ssrc
		}
	}
}

// fragment emits p's tag as RTP packets and ends p's life. A tag that fits
// one packet is marshalled in place in p's own buffer when it has room.
func (s *Stage) fragment(p *core.Packet, out core.Output) {
	f := s.streams[p.Stream]
	if f == nil {
		s.unknown.Inc()
		p.Release()
		return
	}
	h, err := flv.Check(p.Data, 0)
	if err != nil {
		s.badTag.Inc()
		p.Release()
		return
	}
	tag := p.Data
	if len(tag) <= f.MaxPayload && cap(tag) >= len(tag)+rtpheader.Size {
		p.Data = tag[:len(tag)+rtpheader.Size]
		f.Put(p.Data, tag, 0, h.Timestamp) // moves the payload up before writing the header
		p.Type, p.Timestamp = 0, h.Timestamp
		out.Emit(p)
		return
	}
	for off := 0; off < len(tag); {
		q := core.NewPacket(f.Size(len(tag), off))
		_, off = f.Put(q.Data, tag, off, h.Timestamp)
		q.Stream, q.Timestamp, q.Ingest = p.Stream, h.Timestamp, p.Ingest
		out.Emit(q)
	}
	p.Release()
}
