package rtpfragmenter

import (
	"github.com/pion/rtp"

	"github.com/mediapipe/mediapipe/core/media/rtpflv"
)

// fragmenter turns one stream's FLV tags into RTP packets in the format of
// core/media/rtpflv (the wire reference, byte for byte), writing each
// header with pion/rtp. The header is one value reused for every packet:
// Header.MarshalTo into the packet's own buffer allocates nothing, whereas
// Packet.Marshal would allocate a buffer per packet.
type fragmenter struct {
	hdr        rtp.Header // Version 2, no padding/extension/CSRC; PayloadType and SSRC fixed per stream
	maxPayload int
}

func newFragmenter(ssrc uint32, seq uint16, payloadType uint8, maxPayload int) *fragmenter {
	return &fragmenter{
		hdr:        rtp.Header{Version: 2, PayloadType: payloadType & 0x7f, SequenceNumber: seq, SSRC: ssrc},
		maxPayload: maxPayload,
	}
}

// size returns the length of the packet carrying tag bytes from off on, of
// a tag of tagLen bytes.
func (f *fragmenter) size(tagLen, off int) int {
	return rtpflv.RTPHeaderSize + min(f.maxPayload, tagLen-off)
}

// put writes the packet carrying tag from off on into dst (at least
// size(len(tag), off) bytes; dst may alias tag, the payload is moved first)
// and advances the sequence number. It returns the bytes written and the
// offset of the next fragment (len(tag) after the last, which has the
// marker).
func (f *fragmenter) put(dst, tag []byte, off int, ts uint32) (n, next int) {
	next = min(off+f.maxPayload, len(tag))
	n = rtpflv.RTPHeaderSize + copy(dst[rtpflv.RTPHeaderSize:], tag[off:next])
	f.hdr.Marker = next == len(tag)
	f.hdr.Timestamp = ts
	// Cannot fail: dst holds the 12 bytes of a header without CSRC or
	// extension, which is all this header ever has.
	_, _ = f.hdr.MarshalTo(dst[:rtpflv.RTPHeaderSize])
	f.hdr.SequenceNumber++
	return n, next
}
