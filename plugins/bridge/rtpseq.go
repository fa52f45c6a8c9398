package bridge

import (
	"encoding/binary"

	"github.com/mediapipe/mediapipe/core"
)

// rtpNumbering keeps the RTP numbering of an isolated stage that makes RTP
// from another kind (rtp-fragmenter) continuous across its restarts: a new
// process picks a new SSRC and sequence, which a receiver would take for a
// new publisher and end the stream. Each output stream keeps the SSRC its
// first process chose, and its sequence numbers go on from the last one
// sent; what was lost with the dead process is a gap the receiver sees as
// loss. Only the receiver goroutine uses it (restart marks it between two
// receivers).
type rtpNumbering struct {
	streams map[*core.Stream]*rtpStream
}

type rtpStream struct {
	ssrc   uint32 // what downstream sees
	offset uint16 // added to the process's sequence numbers
	last   uint16 // the last sequence number emitted
	resync bool   // the next packet comes from a new process
}

// newRTPNumbering returns nil (nothing rewritten) unless the stage turns
// another kind into RTP.
func newRTPNumbering(spec core.Spec, on bool) *rtpNumbering {
	if !on || spec.Out != core.KindRTP || spec.In == core.KindRTP {
		return nil
	}
	return &rtpNumbering{streams: map[*core.Stream]*rtpStream{}}
}

// restarted marks every stream: its next packet is a new process's.
func (n *rtpNumbering) restarted() {
	if n == nil {
		return
	}
	for _, st := range n.streams {
		st.resync = true
	}
}

// fix rewrites p's SSRC and sequence number in place (no allocation).
func (n *rtpNumbering) fix(p *core.Packet, s *core.Stream) {
	if n == nil || len(p.Data) < 12 {
		return
	}
	seq := binary.BigEndian.Uint16(p.Data[2:])
	st := n.streams[s]
	switch {
	case st == nil:
		st = &rtpStream{ssrc: binary.BigEndian.Uint32(p.Data[8:])}
		n.streams[s] = st
	case st.resync:
		st.offset = st.last + 1 - seq
		st.resync = false
	}
	seq += st.offset
	st.last = seq
	binary.BigEndian.PutUint16(p.Data[2:], seq)
	binary.BigEndian.PutUint32(p.Data[8:], st.ssrc)
}

// ended forgets s.
func (n *rtpNumbering) ended(s *core.Stream) {
	if n != nil {
		delete(n.streams, s)
	}
}
