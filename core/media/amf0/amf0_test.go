package amf0

import (
	"encoding/binary"
	"testing"
)

// meta builds an onMetaData body: optional @setDataFrame, an ECMA array
// holding a nested object, a strict array and two numbers.
func meta(prefix bool) []byte {
	str := func(b []byte, s string) []byte {
		b = append(b, String, 0, byte(len(s)))
		return append(b, s...)
	}
	key := func(b []byte, s string) []byte { return append(append(b, 0, byte(len(s))), s...) }
	var b []byte
	if prefix {
		b = str(b, "@setDataFrame")
	}
	b = str(b, "onMetaData")
	b = append(b, ECMAArray, 0, 0, 0, 4)
	b = key(b, "nested")
	b = append(b, Object)
	b = key(b, "width") // inside a nested object: not top level
	b = append(b, Number, 0, 0, 0, 0, 0, 0, 0, 0)
	b = append(b, 0, 0, ObjectEnd)
	b = key(b, "list")
	b = append(b, StrictArray, 0, 0, 0, 2, Bool, 1, Null)
	b = key(b, "width")
	b = append(b, Number, 0x40, 0x74, 0, 0, 0, 0, 0, 0) // 320
	b = key(b, "encoder")
	b = str(b, "Lavf")
	b = key(b, "height")
	b = append(b, Number, 0x40, 0x66, 0x80, 0, 0, 0, 0, 0) // 180
	return append(b, 0, 0, ObjectEnd)
}

func TestMetaNumbers(t *testing.T) {
	for _, prefix := range []bool{false, true} {
		body := meta(prefix)
		got := map[string]uint64{}
		if !MetaNumbers(body, func(k []byte, at int) { got[string(k)] = binary.BigEndian.Uint64(body[at:]) }) {
			t.Fatalf("prefix %v: not taken as onMetaData", prefix)
		}
		if len(got) != 2 || got["width"] != 0x4074000000000000 || got["height"] != 0x4066800000000000 {
			t.Fatalf("prefix %v: top-level numbers %x", prefix, got)
		}
	}
	if MetaNumbers(append([]byte{String, 0, 3}, "abc"...), func([]byte, int) { t.Fatal("visited") }) {
		t.Fatal("a script tag that is not onMetaData was taken")
	}
}

func FuzzMetaNumbers(f *testing.F) {
	f.Add(meta(false))
	f.Add(meta(true))
	f.Fuzz(func(t *testing.T, body []byte) {
		MetaNumbers(body, func(k []byte, at int) {
			if at < 1 || at+8 > len(body) || body[at-1] != Number {
				t.Fatalf("offset %d in %d bytes is not a number's value", at, len(body))
			}
		})
		if end, ok := Skip(body, 0); ok && (end < 0 || end > len(body)) {
			t.Fatalf("Skip ended at %d of %d", end, len(body))
		}
	})
}
