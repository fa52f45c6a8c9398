package srenhancer

import (
	"encoding/binary"
	"math"
)

// AMF0 type markers.
const (
	amfNumber      = 0x00
	amfBool        = 0x01
	amfString      = 0x02
	amfObject      = 0x03
	amfNull        = 0x05
	amfUndefined   = 0x06
	amfECMAArray   = 0x08
	amfObjectEnd   = 0x09
	amfStrictArray = 0x0A
	amfDate        = 0x0B
	amfLongString  = 0x0C
)

const amfMaxDepth = 8

// patchMetadata multiplies the width and height of an onMetaData script
// tag body by scale (rounded down to even, like the output), in place. It
// reports whether body was onMetaData; anything it cannot read is left as is.
func patchMetadata(body []byte, scale int) bool {
	p := 0
	name, p, ok := amfReadString(body, p)
	if ok && name == "@setDataFrame" {
		name, p, ok = amfReadString(body, p)
	}
	if !ok || name != "onMetaData" || p >= len(body) {
		return false
	}
	patch := func(key string, at int) {
		if (key == "width" || key == "height") && at+9 <= len(body) && body[at] == amfNumber {
			v := math.Float64frombits(binary.BigEndian.Uint64(body[at+1:]))
			if v > 0 && v < 1<<16 {
				binary.BigEndian.PutUint64(body[at+1:], math.Float64bits(float64(outSize(int(v), scale))))
			}
		}
	}
	switch body[p] {
	case amfECMAArray:
		if p+5 > len(body) {
			return true
		}
		amfProps(body, p+5, 0, patch)
	case amfObject:
		amfProps(body, p+1, 0, patch)
	}
	return true
}

func amfReadString(b []byte, p int) (string, int, bool) {
	if p+3 > len(b) || b[p] != amfString {
		return "", p, false
	}
	n := int(binary.BigEndian.Uint16(b[p+1:]))
	if p+3+n > len(b) {
		return "", p, false
	}
	return string(b[p+3 : p+3+n]), p + 3 + n, true
}

// amfProps walks key/value pairs from p to the object end marker, calling
// visit (if set) with each key and its value's offset. It returns the offset
// after the end marker, or -1 when the data is malformed.
func amfProps(b []byte, p, depth int, visit func(key string, at int)) int {
	for p+3 <= len(b) {
		n := int(binary.BigEndian.Uint16(b[p:]))
		if n == 0 && b[p+2] == amfObjectEnd {
			return p + 3
		}
		if p+2+n > len(b) {
			return -1
		}
		key := string(b[p+2 : p+2+n])
		p += 2 + n
		if visit != nil {
			visit(key, p)
		}
		if p = amfSkip(b, p, depth+1); p < 0 {
			return -1
		}
	}
	return -1
}

// amfSkip returns the offset after the value at p, or -1.
func amfSkip(b []byte, p, depth int) int {
	if p >= len(b) || depth > amfMaxDepth {
		return -1
	}
	need := func(n int) int {
		if p+n > len(b) {
			return -1
		}
		return p + n
	}
	switch b[p] {
	case amfNumber:
		return need(9)
	case amfBool:
		return need(2)
	case amfString:
		if p+3 > len(b) {
			return -1
		}
		return need(3 + int(binary.BigEndian.Uint16(b[p+1:])))
	case amfLongString:
		if p+5 > len(b) {
			return -1
		}
		return need(5 + int(binary.BigEndian.Uint32(b[p+1:])))
	case amfNull, amfUndefined:
		return p + 1
	case amfDate:
		return need(11)
	case amfObject:
		return amfProps(b, p+1, depth, nil)
	case amfECMAArray:
		if p+5 > len(b) {
			return -1
		}
		return amfProps(b, p+5, depth, nil)
	case amfStrictArray:
		if p+5 > len(b) {
			return -1
		}
		n := int(binary.BigEndian.Uint32(b[p+1:]))
		p += 5
		for i := 0; i < n; i++ {
			if p = amfSkip(b, p, depth+1); p < 0 {
				return -1
			}
		}
		return p
	}
	return -1
}
