// Package rtpheader reads and writes RTP fixed headers (RFC 3550 §5.1): the one
// place in the tree that decodes them. Pure bytes, no allocation, no I/O.
package rtpheader

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Size is the fixed header: the whole header Put writes (version 2, no
// padding, no extension, no CSRC).
const Size = 12

// Errors of Check and Parse. ErrCSRC and ErrExtension are also ErrShort: the
// packet is shorter than its header says.
var (
	ErrShort     = errors.New("rtpheader: packet shorter than its RTP header")
	ErrVersion   = errors.New("rtpheader: RTP version is not 2")
	ErrCSRC      = fmt.Errorf("%w: CSRC list runs past the packet", ErrShort)
	ErrExtension = fmt.Errorf("%w: header extension runs past the packet", ErrShort)
	ErrPadding   = errors.New("rtpheader: padding length is inconsistent")
)

// Header is the part of an RTP header the media formats use. Parse copies the
// fields out, so a Header never aliases the packet's buffer.
type Header struct {
	Marker      bool
	PayloadType uint8
	Seq         uint16
	Timestamp   uint32
	SSRC        uint32
}

// Check validates b's header lengths as RFC 3550 allows them (CSRCs, a header
// extension, padding) and returns where the payload starts and ends in b.
func Check(b []byte) (start, end int, err error) {
	if len(b) < Size {
		return 0, 0, ErrShort
	}
	if b[0]>>6 != 2 {
		return 0, 0, ErrVersion
	}
	start = Size + 4*int(b[0]&0x0f)
	if start > len(b) {
		return 0, 0, ErrCSRC
	}
	if b[0]&0x10 != 0 { // header extension: 4-byte profile/length, then length words
		if start+4 > len(b) {
			return 0, 0, ErrExtension
		}
		start += 4 + 4*int(binary.BigEndian.Uint16(b[start+2:]))
		if start > len(b) {
			return 0, 0, ErrExtension
		}
	}
	end = len(b)
	if b[0]&0x20 != 0 {
		pad := int(b[end-1])
		if pad == 0 || pad > end-start {
			return 0, 0, ErrPadding
		}
		end -= pad
	}
	return start, end, nil
}

// Parse checks b and reads its header. payload aliases b: copy it before b's
// buffer is reused.
func Parse(b []byte) (h Header, payload []byte, err error) {
	start, end, err := Check(b)
	if err != nil {
		return h, nil, err
	}
	h = Header{Marker: Marker(b), PayloadType: PayloadType(b), Seq: Seq(b), Timestamp: Timestamp(b), SSRC: SSRC(b)}
	return h, b[start:end:end], nil
}

// The field readers below are for packets Check has accepted (or at least
// Size bytes long); they do not check again.

// Version returns the version bits, which RTCP shares (RFC 5761 §4).
func Version(b []byte) uint8 { return b[0] >> 6 }

// Marker returns the marker bit.
func Marker(b []byte) bool { return b[1]&0x80 != 0 }

// PayloadType returns the payload type (marker bit stripped).
func PayloadType(b []byte) uint8 { return b[1] & 0x7f }

// Seq returns the sequence number.
func Seq(b []byte) uint16 { return binary.BigEndian.Uint16(b[2:]) }

// Timestamp returns the RTP timestamp.
func Timestamp(b []byte) uint32 { return binary.BigEndian.Uint32(b[4:]) }

// SSRC returns the synchronization source.
func SSRC(b []byte) uint32 { return binary.BigEndian.Uint32(b[8:]) }

// Put writes the Size-byte header for h into b[:Size].
func Put(b []byte, h Header) {
	_ = b[Size-1]
	b[0] = 0x80 // version 2, no padding, no extension, no CSRC
	b[1] = h.PayloadType & 0x7f
	if h.Marker {
		b[1] |= 0x80
	}
	binary.BigEndian.PutUint16(b[2:], h.Seq)
	binary.BigEndian.PutUint32(b[4:], h.Timestamp)
	binary.BigEndian.PutUint32(b[8:], h.SSRC)
}
