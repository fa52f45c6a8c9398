// Package amf0 reads just enough AMF0 to find and patch numbers in an FLV
// onMetaData script tag in place: no decoding into values, no allocation.
package amf0

import "encoding/binary"

// AMF0 type markers (the ones onMetaData uses).
const (
	Number      = 0x00
	Bool        = 0x01
	String      = 0x02
	Object      = 0x03
	Null        = 0x05
	Undefined   = 0x06
	Reference   = 0x07
	ECMAArray   = 0x08
	ObjectEnd   = 0x09
	StrictArray = 0x0A
	Date        = 0x0B
	LongString  = 0x0C
	Unsupported = 0x0D
)

// maxDepth bounds nesting, so hostile input cannot recurse without limit.
const maxDepth = 8

// ReadString returns the AMF0 string value at p (aliasing b) and the offset after it.
func ReadString(b []byte, p int) (s []byte, next int, ok bool) {
	if p+3 > len(b) || b[p] != String {
		return nil, p, false
	}
	end := p + 3 + int(binary.BigEndian.Uint16(b[p+1:]))
	if end > len(b) {
		return nil, p, false
	}
	return b[p+3 : end], end, true
}

// Skip returns the offset after the AMF0 value at p.
func Skip(b []byte, p int) (int, bool) { return skip(b, p, 0) }

func skip(b []byte, p, depth int) (int, bool) {
	if p >= len(b) || depth > maxDepth {
		return p, false
	}
	end := p
	switch b[p] {
	case Number:
		end = p + 9
	case Bool:
		end = p + 2
	case String:
		_, next, ok := ReadString(b, p)
		return next, ok
	case Null, Undefined, Unsupported:
		end = p + 1
	case Reference:
		end = p + 3
	case Date:
		end = p + 11
	case LongString:
		if p+5 > len(b) {
			return p, false
		}
		end = p + 5 + int(binary.BigEndian.Uint32(b[p+1:]))
	case Object:
		return skipProps(b, p+1, depth+1)
	case ECMAArray:
		return skipProps(b, p+5, depth+1)
	case StrictArray:
		if p+5 > len(b) {
			return p, false
		}
		count := binary.BigEndian.Uint32(b[p+1:])
		q := p + 5
		for i := uint32(0); i < count; i++ { // each value takes a byte at least: bounded by len(b)
			var ok bool
			if q, ok = skip(b, q, depth+1); !ok {
				return q, false
			}
		}
		return q, true
	default:
		return p, false
	}
	return end, end >= p && end <= len(b)
}

// skipProps skips key/value pairs from p to and with the object end marker.
func skipProps(b []byte, p, depth int) (int, bool) {
	for p+3 <= len(b) {
		n := int(binary.BigEndian.Uint16(b[p:]))
		if n == 0 && b[p+2] == ObjectEnd {
			return p + 3, true
		}
		var ok bool
		if p, ok = skip(b, p+2+n, depth); !ok {
			return p, false
		}
	}
	return p, false
}

// MetaNumbers walks the top-level properties of an onMetaData script tag
// body (optionally behind "@setDataFrame") and calls visit with each
// property whose value is a number: its key (aliasing body) and the offset
// of its 8-byte big-endian float64, which the caller may overwrite. It
// reports whether body is onMetaData at all. Anything it cannot read ends
// the walk quietly: the rest is left as it is.
func MetaNumbers(body []byte, visit func(key []byte, at int)) bool {
	name, p, ok := ReadString(body, 0)
	if ok && string(name) == "@setDataFrame" {
		name, p, ok = ReadString(body, p)
	}
	if !ok || string(name) != "onMetaData" {
		return false
	}
	if p >= len(body) {
		return true
	}
	switch body[p] {
	case ECMAArray:
		p += 5 // marker, approximate count
	case Object:
		p++
	default:
		return true
	}
	// Until the end marker or the data's end (some writers end an ECMA
	// array by its count alone).
	for p+2 <= len(body) {
		n := int(binary.BigEndian.Uint16(body[p:]))
		at := p + 2 + n
		if at >= len(body) {
			return true
		}
		if n == 0 && body[at] == ObjectEnd {
			return true
		}
		if body[at] == Number && at+9 <= len(body) {
			visit(body[p+2:at], at+1)
		}
		if p, ok = skip(body, at, 0); !ok {
			return true
		}
	}
	return true
}
