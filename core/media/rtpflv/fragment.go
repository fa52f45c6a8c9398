package rtpflv

import (
	"errors"

	"github.com/mediapipe/mediapipe/core/media/flv"
)

// MinMaxPayload is the smallest MaxPayload a Fragmenter accepts: the first
// fragment must hold the whole 11-byte FLV tag header.
const MinMaxPayload = flv.HeaderSize

// ErrMaxPayload is returned for a MaxPayload below MinMaxPayload.
var ErrMaxPayload = errors.New("rtpflv: max payload must hold at least an FLV tag header")

// Fragmenter turns the FLV tags of one stream (one SSRC) into RTP packets.
// It holds no buffers: the caller supplies them, so fragmenting allocates
// nothing.
type Fragmenter struct {
	SSRC        uint32
	Seq         uint16 // sequence number of the next packet; wraps
	PayloadType uint8
	MaxPayload  int // payload bytes per packet; at least MinMaxPayload
}

// NewFragmenter returns a Fragmenter starting at seq.
func NewFragmenter(ssrc uint32, seq uint16, payloadType uint8, maxPayload int) (*Fragmenter, error) {
	if maxPayload < MinMaxPayload {
		return nil, ErrMaxPayload
	}
	return &Fragmenter{SSRC: ssrc, Seq: seq, PayloadType: payloadType, MaxPayload: maxPayload}, nil
}

// Count returns how many packets a tag of tagLen bytes becomes.
func (f *Fragmenter) Count(tagLen int) int {
	if tagLen <= f.MaxPayload {
		return 1
	}
	return (tagLen + f.MaxPayload - 1) / f.MaxPayload
}

// Size returns the marshalled length of the packet carrying tag bytes from
// off on, of a tag of tagLen bytes.
func (f *Fragmenter) Size(tagLen, off int) int {
	return RTPHeaderSize + min(f.MaxPayload, tagLen-off)
}

// PutHeader writes the RTP header of the next packet into dst[:12] and
// advances the sequence number.
func (f *Fragmenter) PutHeader(dst []byte, ts uint32, marker bool) {
	PutHeader(dst, Header{Marker: marker, PayloadType: f.PayloadType, Seq: f.Seq, Timestamp: ts, SSRC: f.SSRC})
	f.Seq++
}

// Put marshals the packet that carries tag from off on into dst, which must
// hold Size(len(tag), off) bytes, and advances the sequence number. It returns
// the bytes written and the offset of the next fragment (len(tag) after the
// last). ts is the tag's FLV timestamp. Loop from off = 0 while off < len(tag).
func (f *Fragmenter) Put(dst, tag []byte, off int, ts uint32) (n, next int) {
	n, next = f.PutPayload(dst, tag, off)
	f.PutHeader(dst, ts, next == len(tag))
	return n, next
}

// PutPayload is Put without the header: it copies the fragment of tag from
// off on into dst after the header's 12 bytes (dst may alias tag: the copy
// moves it) and returns the packet's length and the offset of the next
// fragment; the fragment is the tag's last, the marked one, when next ==
// len(tag). The header is then the caller's to write.
func (f *Fragmenter) PutPayload(dst, tag []byte, off int) (n, next int) {
	next = min(off+f.MaxPayload, len(tag))
	return RTPHeaderSize + copy(dst[RTPHeaderSize:], tag[off:next]), next
}
