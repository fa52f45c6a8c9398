package rtpfragmenter

import (
	"github.com/pion/rtp"

	"github.com/mediapipe/mediapipe/core/media/rtpflv"
)

// fragmenter is rtpflv's Fragmenter, the wire format (its split, SSRC and
// sequence), with each header written by pion/rtp instead of by hand: a
// Header value marshalled into the packet's own buffer allocates nothing,
// whereas Packet.Marshal would allocate a buffer per packet.
type fragmenter struct{ rtpflv.Fragmenter }

// put is rtpflv's Put with pion's header: it writes the packet carrying tag
// from off on into dst (at least Size(len(tag), off) bytes; dst may alias
// tag) and advances the sequence number. It returns the bytes written and
// the offset of the next fragment (len(tag) after the last, which has the
// marker).
func (f *fragmenter) put(dst, tag []byte, off int, ts uint32) (n, next int) {
	n, next = f.PutPayload(dst, tag, off)
	h := rtp.Header{
		Version:        2, // no padding, extension or CSRC
		Marker:         next == len(tag),
		PayloadType:    f.PayloadType & 0x7f,
		SequenceNumber: f.Seq,
		Timestamp:      ts,
		SSRC:           f.SSRC,
	}
	// Cannot fail: dst holds the 12 bytes of a header without CSRC or
	// extension, which is all this header ever has.
	_, _ = h.MarshalTo(dst[:rtpflv.RTPHeaderSize])
	f.Seq++
	return n, next
}
