package srenhancer

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/mediapipe/mediapipe/core/media/amf0"
)

// metadataBody builds an onMetaData body as FLV writers do, with values of
// every common type around width and height.
func metadataBody(prefix bool, w, h float64) []byte {
	var b []byte
	str := func(s string) {
		b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
		b = append(b, s...)
	}
	num := func(v float64) {
		b = append(b, amf0.Number)
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(v))
	}
	if prefix {
		b = append(b, amf0.String)
		str("@setDataFrame")
	}
	b = append(b, amf0.String)
	str("onMetaData")
	b = append(b, amf0.ECMAArray, 0, 0, 0, 6)
	str("duration")
	num(5)
	str("encoder")
	b = append(b, amf0.String)
	str("Lavf59.27.100")
	str("nested")
	b = append(b, amf0.Object)
	str("width")
	num(7) // not the picture's: must stay
	b = append(b, 0, 0, amf0.ObjectEnd)
	str("list")
	b = append(b, amf0.StrictArray, 0, 0, 0, 2, amf0.Bool, 1, amf0.Null)
	str("width")
	num(w)
	str("height")
	num(h)
	return append(b, 0, 0, amf0.ObjectEnd)
}

func TestPatchMetadata(t *testing.T) {
	for _, prefix := range []bool{false, true} {
		body := metadataBody(prefix, 320, 180)
		if !patchMetadata(body, 4) {
			t.Fatal("not recognised as onMetaData")
		}
		if want := metadataBody(prefix, 1280, 720); string(body) != string(want) {
			t.Fatalf("prefix %v:\n got %x\nwant %x", prefix, body, want)
		}
	}
	body := metadataBody(false, 321, 181)
	patchMetadata(body, 3)
	if want := metadataBody(false, 962, 542); string(body) != string(want) {
		t.Fatal("odd sizes are not rounded down to even")
	}
	if patchMetadata([]byte{amf0.String, 0, 3, 'a', 'b', 'c'}, 4) {
		t.Fatal("a script tag that is not onMetaData was taken")
	}
}

func FuzzPatchMetadata(f *testing.F) {
	f.Add(metadataBody(false, 320, 180))
	f.Add(metadataBody(true, 640, 360))
	f.Fuzz(func(t *testing.T, body []byte) {
		patchMetadata(body, 4)
	})
}
