package h264

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

// spsCases are SPS NAL units written by x264 (ffmpeg 5.1, libx264) for
// testsrc2 at the given size and pixel format; the table feeds the unit test,
// the benchmark and the fuzz seeds.
var spsCases = []struct {
	name          string
	hex           string
	width, height int
	chroma        uint32
	frameMBsOnly  bool
}{
	{"320x180 baseline (cropped 192→180)", "6742c00cd901419f9f011000000300100000030320f142a480", 320, 180, 1, true},
	{"1280x720 high", "6764001facd9405005bb011000000300100000030320f1831960", 1280, 720, 1, true},
	{"1920x1080 main (cropped 1088→1080)", "674d4028eca03c0113f2e022000003000200000300641e30632c", 1920, 1080, 1, true},
	{"322x182 high (odd MB crop both ways)", "6764000dacd941519e226c0440000003004000000c83c50a6580", 322, 182, 1, true},
	{"640x360 high 4:4:4", "67f4001e919b281405ff1380880000030008000003019078b16cb0", 640, 360, 3, true},
	{"176x144 high 4:2:2", "677a000bbcd942c4ec0440000003004000000c83c50a6580", 176, 144, 2, true},
	{"720x576 interlaced", "6764001eacd940b424d8088000000300800000190f8a14cb", 720, 576, 1, false},
	{"640x480 high", "6764001eacd940a03db011000003000100000300320f162d96", 640, 480, 1, true},
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseSPS(t *testing.T) {
	for _, c := range spsCases {
		t.Run(c.name, func(t *testing.T) {
			s, err := ParseSPS(mustHex(t, c.hex))
			if err != nil {
				t.Fatal(err)
			}
			if s.Width != c.width || s.Height != c.height || s.ChromaFormat != c.chroma || s.FrameMBsOnly != c.frameMBsOnly {
				t.Fatalf("got %dx%d chroma %d frameMBsOnly %v, want %dx%d chroma %d %v",
					s.Width, s.Height, s.ChromaFormat, s.FrameMBsOnly, c.width, c.height, c.chroma, c.frameMBsOnly)
			}
		})
	}
}

func TestParseSPSErrors(t *testing.T) {
	good := mustHex(t, spsCases[0].hex)
	for _, c := range []struct {
		name string
		nal  []byte
		want error
	}{
		{"empty", nil, ErrShort},
		{"pps", []byte{0x68, 1, 2, 3}, ErrNotSPS},
		{"truncated", good[:6], ErrBadSPS},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := ParseSPS(c.nal); !errors.Is(err, c.want) {
				t.Fatalf("err %v, want %v", err, c.want)
			}
		})
	}
}

// recordHex is the body (after the 5-byte FLV prefix) of the AVC sequence
// header ffmpeg's FLV muxer wrote for a 320x180 libx264 encode.
const recordHex = "0164000cffe1001a6764000cacd941419f9f011000000300100000030320f142996001000668ebe3cb22c0fdf8f800"

func TestConfig(t *testing.T) {
	rec := mustHex(t, recordHex)
	s, c, err := ConfigSize(rec)
	if err != nil {
		t.Fatal(err)
	}
	if s.Width != 320 || s.Height != 180 || c.LengthSize != 4 || len(c.SPS) != 1 || len(c.PPS) != 1 {
		t.Fatalf("got %dx%d lengthSize %d sps %d pps %d", s.Width, s.Height, c.LengthSize, len(c.SPS), len(c.PPS))
	}
	again, err := MarshalConfig(c.SPS, c.PPS)
	if err != nil {
		t.Fatal(err)
	}
	// x264's record ends with the high-profile extension; the rest must match.
	if !bytes.HasPrefix(rec, again) {
		t.Fatalf("marshal:\n got %x\nwant %x", again, rec)
	}
	for _, bad := range [][]byte{nil, rec[:6], rec[:20], {2, 0, 0, 0, 0xff, 0xe1, 0}, {1, 0, 0, 0, 0xff, 0xe0, 0}} {
		if _, err := UnmarshalConfig(bad); err == nil {
			t.Errorf("UnmarshalConfig(%x): no error", bad)
		}
	}
}

func TestUnescape(t *testing.T) {
	for _, c := range []struct{ in, out string }{
		{"0102", "0102"},
		{"00000301", "000001"},
		{"0000030000030000", "00000000 0000"},
		{"000003", "0000"},
	} {
		want := mustHex(t, string(bytes.ReplaceAll([]byte(c.out), []byte(" "), nil)))
		if got := unescape(mustHex(t, c.in)); !bytes.Equal(got, want) {
			t.Errorf("unescape(%s) = %x, want %x", c.in, got, want)
		}
	}
}

func BenchmarkParseSPS(b *testing.B) {
	nal := mustHex(b, spsCases[1].hex)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseSPS(nal); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzParseSPS(f *testing.F) {
	for _, c := range spsCases {
		f.Add(mustHex(f, c.hex))
	}
	f.Fuzz(func(t *testing.T, nal []byte) {
		s, err := ParseSPS(nal)
		if err == nil && (s.Width <= 0 || s.Height <= 0 || s.Width > 16384 || s.Height > 16384) {
			t.Fatalf("accepted size %dx%d", s.Width, s.Height)
		}
	})
}

func FuzzUnmarshalConfig(f *testing.F) {
	f.Add(mustHex(f, recordHex))
	f.Fuzz(func(t *testing.T, rec []byte) {
		c, err := UnmarshalConfig(rec)
		if err == nil && len(c.SPS) == 0 {
			t.Fatal("accepted a record without SPS")
		}
		_, _, _ = ConfigSize(rec)
	})
}
