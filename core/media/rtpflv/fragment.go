// Package rtpflv is the RTP payload format that carries FLV tags from cloud to
// edge: one tag per packet, or consecutive fragments with the marker on the last.
//
// Wire format (docs/protocol.md, compatible with the seed system's Rtp_Http_Flv
// edge): the RTP payload is the FLV tag itself (11-byte header + body, no
// PreviousTagSize), nothing else. A tag of at most MaxPayload bytes is one
// packet with the marker bit set; a longer tag is split into packets of exactly
// MaxPayload bytes (the last one shorter) and only the last carries the marker.
// The RTP timestamp is the FLV timestamp in milliseconds; sequence numbers run
// on per SSRC without gaps and wrap. RTP headers are rtpheader's (version 2, no
// padding, extension or CSRC on send). No I/O and no goroutines here.
package rtpflv

import (
	"errors"

	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/media/rtpheader"
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
	return rtpheader.Size + min(f.MaxPayload, tagLen-off)
}

// Put marshals the packet that carries tag from off on into dst, which must
// hold Size(len(tag), off) bytes, and advances the sequence number. It returns
// the bytes written and the offset of the next fragment (len(tag) after the
// last, which has the marker). ts is the tag's FLV timestamp. dst may alias
// tag: the payload is moved up before the header is written. Loop from
// off = 0 while off < len(tag).
func (f *Fragmenter) Put(dst, tag []byte, off int, ts uint32) (n, next int) {
	next = min(off+f.MaxPayload, len(tag))
	n = rtpheader.Size + copy(dst[rtpheader.Size:], tag[off:next])
	rtpheader.Put(dst, rtpheader.Header{Marker: next == len(tag), PayloadType: f.PayloadType, Seq: f.Seq, Timestamp: ts, SSRC: f.SSRC})
	f.Seq++
	return n, next
}
