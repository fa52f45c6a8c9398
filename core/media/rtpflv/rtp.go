// Package rtpflv is the RTP payload format that carries FLV tags from cloud to
// edge: one tag per packet, or consecutive fragments with the marker on the last.
//
// Wire format (design.md, compatible with the seed system's Rtp_Http_Flv edge):
// the RTP payload is the FLV tag itself (11-byte header + body, no
// PreviousTagSize), nothing else. A tag of at most MaxPayload bytes is one
// packet with the marker bit set; a longer tag is split into packets of exactly
// MaxPayload bytes (the last one shorter) and only the last carries the marker.
// The RTP timestamp is the FLV timestamp in milliseconds; sequence numbers run
// on per SSRC without gaps and wrap. No I/O and no goroutines here.
package rtpflv

import "errors"

// RTPHeaderSize is the fixed RTP header this package writes: version 2, no
// padding, no extension, no CSRC.
const RTPHeaderSize = 12

// Defaults of the wire format.
const (
	DefaultPayloadType = 100
	DefaultMaxPayload  = 1180
)

var (
	// ErrShortPacket: fewer bytes than the RTP header says there are.
	ErrShortPacket = errors.New("rtpflv: packet shorter than its RTP header")
	// ErrVersion: not RTP version 2.
	ErrVersion = errors.New("rtpflv: not RTP version 2")
	// ErrPadding: the padding count runs past the payload.
	ErrPadding = errors.New("rtpflv: bad RTP padding")
)

// Header is the part of an RTP header the format uses. Parsing copies the
// fields out, so a Header never aliases the packet's buffer.
type Header struct {
	Marker      bool
	PayloadType uint8
	Seq         uint16
	Timestamp   uint32
	SSRC        uint32
}

// PutHeader writes a 12-byte RTP header for h into b[:12].
func PutHeader(b []byte, h Header) {
	_ = b[11]
	b[0] = 0x80 // version 2, no padding, no extension, no CSRC
	b[1] = h.PayloadType & 0x7f
	if h.Marker {
		b[1] |= 0x80
	}
	b[2], b[3] = byte(h.Seq>>8), byte(h.Seq)
	b[4], b[5], b[6], b[7] = byte(h.Timestamp>>24), byte(h.Timestamp>>16), byte(h.Timestamp>>8), byte(h.Timestamp)
	b[8], b[9], b[10], b[11] = byte(h.SSRC>>24), byte(h.SSRC>>16), byte(h.SSRC>>8), byte(h.SSRC)
}

// Parse reads an RTP packet. It accepts what RFC 3550 allows (CSRCs, a header
// extension, padding) though the format never sends them. payload aliases
// pkt: copy it before pkt's buffer is reused.
func Parse(pkt []byte) (h Header, payload []byte, err error) {
	if len(pkt) < RTPHeaderSize {
		return h, nil, ErrShortPacket
	}
	if pkt[0]>>6 != 2 {
		return h, nil, ErrVersion
	}
	h = Header{
		Marker:      pkt[1]&0x80 != 0,
		PayloadType: pkt[1] & 0x7f,
		Seq:         uint16(pkt[2])<<8 | uint16(pkt[3]),
		Timestamp:   uint32(pkt[4])<<24 | uint32(pkt[5])<<16 | uint32(pkt[6])<<8 | uint32(pkt[7]),
		SSRC:        uint32(pkt[8])<<24 | uint32(pkt[9])<<16 | uint32(pkt[10])<<8 | uint32(pkt[11]),
	}
	n := RTPHeaderSize + 4*int(pkt[0]&0x0f)
	if len(pkt) < n {
		return h, nil, ErrShortPacket
	}
	if pkt[0]&0x10 != 0 { // header extension: 4-byte profile/length, then length words
		if len(pkt) < n+4 {
			return h, nil, ErrShortPacket
		}
		n += 4 + 4*(int(pkt[n+2])<<8|int(pkt[n+3]))
		if len(pkt) < n {
			return h, nil, ErrShortPacket
		}
	}
	end := len(pkt)
	if pkt[0]&0x20 != 0 {
		pad := int(pkt[end-1])
		if pad == 0 || end-pad < n {
			return h, nil, ErrPadding
		}
		end -= pad
	}
	return h, pkt[n:end:end], nil
}
