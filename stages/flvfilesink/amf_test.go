package flvfilesink

import (
	"bytes"
	"testing"

	"github.com/mediapipe/mediapipe/core/media/amf0"
)

// metaCases are onMetaData bodies and where their duration and filesize
// values sit. The first is the head of the metadata ffmpeg 5.1's FLV muxer
// writes (from the test clip), cut after filesize.
var metaCases = []struct {
	name               string
	body               []byte
	duration, filesize int
}{
	{"ffmpeg", []byte("\x02\x00\x0aonMetaData\x08\x00\x00\x00\x0d" +
		"\x00\x08duration\x00\x40\x14\x17\x8d\x4f\xdf\x3b\x64" +
		"\x00\x06stereo\x01\x00" +
		"\x00\x07encoder\x02\x00\x0dLavf59.27.100" +
		"\x00\x08filesize\x00\x41\x0e\xd5\x20\x00\x00\x00\x00" +
		"\x00\x00\x09"), 29, 83},
	{"object, nested values first", []byte("\x02\x00\x0aonMetaData\x03" +
		"\x00\x04list\x0a\x00\x00\x00\x02\x05\x03\x00\x01a\x01\x01\x00\x00\x09" +
		"\x00\x04date\x0b\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" +
		"\x00\x08filesize\x00\x00\x00\x00\x00\x00\x00\x00\x00" +
		"\x00\x08duration\x00\x00\x00\x00\x00\x00\x00\x00\x00" +
		"\x00\x00\x09"), 82, 63},
	{"no end marker", []byte("\x02\x00\x0aonMetaData\x08\x00\x00\x00\x01" +
		"\x00\x08duration\x00\x00\x00\x00\x00\x00\x00\x00\x00"), 29, -1},
	{"duration not a number", []byte("\x02\x00\x0aonMetaData\x08\x00\x00\x00\x01" +
		"\x00\x08duration\x02\x00\x015\x00\x00\x09"), -1, -1},
	{"truncated value", []byte("\x02\x00\x0aonMetaData\x08\x00\x00\x00\x01" +
		"\x00\x08duration\x00\x00\x00\x00"), -1, -1},
	{"unknown marker before", []byte("\x02\x00\x0aonMetaData\x08\x00\x00\x00\x02" +
		"\x00\x01x\x42\x00\x08duration\x00\x00\x00\x00\x00\x00\x00\x00\x00"), -1, -1},
	{"not an array", []byte("\x02\x00\x0aonMetaData\x02\x00\x00"), -1, -1},
	{"empty", nil, -1, -1},
}

func TestMetaSlots(t *testing.T) {
	for _, c := range metaCases {
		t.Run(c.name, func(t *testing.T) {
			d, f := metaSlots(c.body)
			if d != c.duration || f != c.filesize {
				t.Fatalf("slots %d, %d; want %d, %d", d, f, c.duration, c.filesize)
			}
			for _, at := range []int{d, f} {
				if at >= 0 && (at+8 > len(c.body) || c.body[at-1] != amf0.Number) {
					t.Fatalf("slot %d is not a number's value", at)
				}
			}
		})
	}
}

func FuzzMetaSlots(f *testing.F) {
	for _, c := range metaCases {
		f.Add(c.body)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		d, fs := metaSlots(body)
		for _, at := range []int{d, fs} {
			if at >= 0 && (at < 1 || at+8 > len(body) || body[at-1] != amf0.Number) {
				t.Fatalf("slot %d in %d bytes is not a number's value", at, len(body))
			}
		}
		if d >= 0 && !bytes.Equal(body[d-9-2:d-1], append([]byte{0, 8}, "duration"...)) {
			t.Fatalf("duration slot %d not after its key", d)
		}
	})
}
