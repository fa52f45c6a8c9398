package bridge

import (
	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
)

// headers keeps, for each live input stream of an av or flv stage, a copy of
// the last metadata and audio and video sequence header the stage was sent.
// A restarted process is sent them again right after the stream's start, as
// the stage saw them at the stream's real start: a stage that decodes (an
// isolated sr-enhancer) cannot resume mid-stream without them, and the
// stream's init tags may already be the stage's own output's (sr-enhancer
// replaces them), not its input's. At most three tags per live stream; only
// the loop goroutine uses it.
type headers struct {
	kind core.Kind
	tags map[*core.Stream]*[3]*core.Packet // metadata, audio, video
}

func newHeaders(kind core.Kind, on bool) *headers {
	if !on {
		return nil
	}
	return &headers{kind: kind, tags: map[*core.Stream]*[3]*core.Packet{}}
}

// slot says which header p is (0 metadata, 1 audio, 2 video), or -1. It
// reads a byte or two of the packet and allocates nothing.
func (h *headers) slot(p *core.Packet) int {
	var body []byte
	switch h.kind {
	case core.KindFLV:
		if len(p.Data) <= flv.HeaderSize {
			return -1
		}
		body = p.Data[flv.HeaderSize:]
	case core.KindAV:
		body = p.Data
	default:
		return -1
	}
	switch p.Type {
	case flv.TypeScript:
		return 0
	case flv.TypeAudio:
		if a, ok := flv.ParseAudio(body); ok && a.IsSequenceHeader() {
			return 1
		}
	case flv.TypeVideo:
		if v, ok := flv.ParseVideo(body); ok && v.IsSequenceHeader() {
			return 2
		}
	}
	return -1
}

// note keeps a copy of p if it is one of its stream's headers.
func (h *headers) note(p *core.Packet) {
	if h == nil || p.Event != core.EventData || p.Stream == nil {
		return
	}
	i := h.slot(p)
	if i < 0 {
		return
	}
	set := h.tags[p.Stream]
	if set == nil {
		set = new([3]*core.Packet)
		h.tags[p.Stream] = set
	}
	if set[i] != nil {
		set[i].Release()
	}
	set[i] = p.Clone()
}

// replay returns fresh copies of s's headers, metadata first, for the
// caller to send (and so release).
func (h *headers) replay(s *core.Stream) []*core.Packet {
	if h == nil {
		return nil
	}
	set := h.tags[s]
	if set == nil {
		return nil
	}
	var out []*core.Packet
	for _, p := range set {
		if p != nil {
			out = append(out, p.Clone())
		}
	}
	return out
}

// forget drops what is kept for s (its end).
func (h *headers) forget(s *core.Stream) {
	if h == nil {
		return
	}
	if set := h.tags[s]; set != nil {
		for _, p := range set {
			if p != nil {
				p.Release()
			}
		}
		delete(h.tags, s)
	}
}

// clear drops everything (the stage's Run ends).
func (h *headers) clear() {
	if h == nil {
		return
	}
	for s := range h.tags {
		h.forget(s)
	}
}
