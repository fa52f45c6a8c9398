package httpflvsink

import (
	"sync"
	"sync/atomic"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
)

// tagRef shares one tag's bytes, PreviousTagSize included, between the GOP
// cache and every viewer queue: written once, read by all, never copied per
// viewer. The last holder to let go recycles the packet.
type tagRef struct {
	p    *core.Packet
	b    []byte // tag + PreviousTagSize: what goes on the wire
	key  bool   // a video keyframe
	refs atomic.Int32
}

var refPool = sync.Pool{New: func() any { return new(tagRef) }}

// newRef takes ownership of p (a whole FLV tag) and returns it with one reference.
func newRef(p *core.Packet) *tagRef {
	r := refPool.Get().(*tagRef)
	n := len(p.Data)
	p.Data = flv.AppendPreviousTagSize(p.Data, n) // in place while the pooled buffer has room
	r.p, r.b = p, p.Data
	r.key = p.Type == flv.TypeVideo && flv.IsVideoKeyframe(p.Data[flv.HeaderSize:n])
	r.refs.Store(1)
	return r
}

func (r *tagRef) release() {
	if r.refs.Add(-1) == 0 {
		r.p.Release()
		r.p, r.b = nil, nil
		refPool.Put(r)
	}
}
