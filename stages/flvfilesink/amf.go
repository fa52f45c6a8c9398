package flvfilesink

import "encoding/binary"

// AMF0 type markers (the ones onMetaData uses).
const (
	amfNumber      = 0x00
	amfBool        = 0x01
	amfString      = 0x02
	amfObject      = 0x03
	amfNull        = 0x05
	amfUndefined   = 0x06
	amfReference   = 0x07
	amfECMAArray   = 0x08
	amfObjectEnd   = 0x09
	amfStrictArray = 0x0A
	amfDate        = 0x0B
	amfLongString  = 0x0C
	amfUnsupported = 0x0D
)

const amfMaxDepth = 8

// metaSlots finds, in an onMetaData script tag body, where the 8-byte
// values of the top-level numbers "duration" and "filesize" are (offsets
// into body), or -1 for each one that is not there. Anything it cannot read
// is taken as absent: the tag is then left as it is.
func metaSlots(body []byte) (duration, filesize int) {
	duration, filesize = -1, -1
	p, ok := amfSkipString(body, 0) // "onMetaData"
	if !ok || p >= len(body) {
		return
	}
	switch body[p] {
	case amfECMAArray:
		p += 5 // marker, approximate count
	case amfObject:
		p++
	default:
		return
	}
	// Top-level properties, until the end marker or the data (some writers
	// end an ECMA array by its count alone).
	for p+2 <= len(body) {
		n := int(binary.BigEndian.Uint16(body[p:]))
		at := p + 2 + n
		if at >= len(body) {
			return
		}
		if n == 0 && body[at] == amfObjectEnd {
			return
		}
		if body[at] == amfNumber && at+9 <= len(body) {
			switch string(body[p+2 : at]) { // compared only: no copy
			case "duration":
				duration = at + 1
			case "filesize":
				filesize = at + 1
			}
		}
		if p, ok = amfSkip(body, at, 0); !ok {
			return
		}
	}
	return
}

// amfSkipString skips the AMF0 string value at p.
func amfSkipString(b []byte, p int) (int, bool) {
	if p+3 > len(b) || b[p] != amfString {
		return p, false
	}
	end := p + 3 + int(binary.BigEndian.Uint16(b[p+1:]))
	return end, end <= len(b)
}

// amfSkip returns the offset after the AMF0 value at p.
func amfSkip(b []byte, p, depth int) (int, bool) {
	if p >= len(b) || depth > amfMaxDepth {
		return p, false
	}
	end := p
	switch b[p] {
	case amfNumber:
		end = p + 9
	case amfBool:
		end = p + 2
	case amfString:
		return amfSkipString(b, p)
	case amfNull, amfUndefined, amfUnsupported:
		end = p + 1
	case amfReference:
		end = p + 3
	case amfDate:
		end = p + 11
	case amfLongString:
		if p+5 > len(b) {
			return p, false
		}
		end = p + 5 + int(binary.BigEndian.Uint32(b[p+1:]))
	case amfObject:
		return amfSkipProps(b, p+1, depth+1)
	case amfECMAArray:
		return amfSkipProps(b, p+5, depth+1)
	case amfStrictArray:
		if p+5 > len(b) {
			return p, false
		}
		count := binary.BigEndian.Uint32(b[p+1:])
		q := p + 5
		for i := uint32(0); i < count; i++ { // each value takes a byte at least: bounded by len(b)
			var ok bool
			if q, ok = amfSkip(b, q, depth+1); !ok {
				return q, false
			}
		}
		return q, true
	default:
		return p, false
	}
	return end, end >= p && end <= len(b)
}

// amfSkipProps skips key/value pairs from p to and with the object end marker.
func amfSkipProps(b []byte, p, depth int) (int, bool) {
	for p+3 <= len(b) {
		n := int(binary.BigEndian.Uint16(b[p:]))
		if n == 0 && b[p+2] == amfObjectEnd {
			return p + 3, true
		}
		var ok bool
		if p, ok = amfSkip(b, p+2+n, depth); !ok {
			return p, false
		}
	}
	return p, false
}
