// Package flvtagger is the flv-tagger stage: it turns each av media message
// into one FLV tag and keeps each stream's init tags for late joiners.
//
// Tag types are go-flv's. The tag itself is written by core/media/flv, not
// by go-flv's tag.EncodeFlvTag: that one allocates a bytes.Buffer and two
// slices per tag and wants the body decoded into its AudioData/VideoData
// first, where the tagger only prepends an 11-byte header to bytes it
// already has (one pooled packet, no allocation). The tests read the
// tagger's output back with go-flv's decoder, an independent check.
package flvtagger

import (
	"bytes"
	"context"
	_ "embed"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
)

// Config is flv-tagger's parameters (none).
type Config struct{}

// sample is an example [[pipeline.stage]] block for this stage, carried in
// its spec; stages/all checks that it validates.
//
//go:embed sample.toml
var sample string

func init() {
	core.Register(core.Spec{
		Name:    "flv-tagger",
		Summary: "builds one FLV tag per media message; keeps onMetaData and the AVC/HEVC and AAC sequence headers per stream for late joiners",
		In:      core.KindAV,
		Out:     core.KindFLV,
		Sample:  sample,
	}, New)
}

// Stage is a running flv-tagger.
type Stage struct {
	env     *core.Env
	badType *core.DropCounter
	tooBig  *core.DropCounter
	unknown *core.DropCounter
	streams map[*core.Stream]struct{}
}

// New builds an flv-tagger.
func New(_ *Config, env *core.Env) (core.Stage, error) {
	return &Stage{
		env:     env,
		badType: env.Metrics.Drop("bad_type"),
		tooBig:  env.Metrics.Drop("too_large"),
		unknown: env.Metrics.Drop("unknown_stream"),
		streams: map[*core.Stream]struct{}{},
	}, nil
}

// Run tags packets until in closes.
func (s *Stage) Run(_ context.Context, in <-chan *core.Packet, out core.Output) error {
	for p := range in {
		switch p.Event {
		case core.EventStart:
			s.streams[p.Stream] = struct{}{}
			out.Emit(p)
		case core.EventEnd:
			delete(s.streams, p.Stream)
			out.Emit(p)
		default:
			if q := s.tag(p); q != nil {
				out.Emit(q)
			}
		}
	}
	return nil
}

// tag returns p's FLV tag as a new pooled packet and releases p, or drops p.
func (s *Stage) tag(p *core.Packet) *core.Packet {
	defer p.Release()
	if _, ok := s.streams[p.Stream]; !ok {
		s.unknown.Inc()
		return nil
	}
	switch p.Type {
	case flv.TypeAudio, flv.TypeVideo, flv.TypeScript:
	default:
		s.badType.Inc()
		return nil
	}
	if len(p.Data) > flv.MaxTagSize {
		s.tooBig.Inc()
		return nil
	}
	q := core.NewPacket(flv.HeaderSize + len(p.Data))
	flv.PutHeader(q.Data, p.Type, uint32(len(p.Data)), p.Timestamp)
	copy(q.Data[flv.HeaderSize:], p.Data)
	q.Stream, q.Type, q.Timestamp, q.Ingest = p.Stream, p.Type, p.Timestamp, p.Ingest
	if kind := flv.InitKindOf(q.Type, p.Data); kind != flv.InitNone {
		SetInitTag(p.Stream, kind, q.Data)
	}
	return q
}

// SetInitTag publishes a copy of tag as st's init tag of kind, in a new
// InitTags value (shared values are never changed).
func SetInitTag(st *core.Stream, kind flv.InitKind, tag []byte) {
	var next core.InitTags
	if cur := st.Init(); cur != nil {
		next = *cur
	}
	tag = bytes.Clone(tag)
	switch kind {
	case flv.InitMetadata:
		next.Metadata = tag
	case flv.InitVideo:
		next.Video = tag
	case flv.InitAudio:
		next.Audio = tag
	default:
		return
	}
	st.SetInit(&next)
}
