package rtx

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"

	"github.com/mediapipe/mediapipe/core"
)

// frameCases are whole frames; they seed FuzzFrames too.
var frameCases = []struct {
	name string
	wire []byte
	typ  FrameType
}{
	{"hello", AppendHello(nil, Hello{Version: 1, Token: "s3cret"}), FrameHello},
	{"hello no token", AppendHello(nil, Hello{Version: 1}), FrameHello},
	{"hello ok", AppendHelloOK(nil, HelloOK{Version: 1, CachePackets: 5000}), FrameHelloOK},
	{"nack", []byte{0x10, 0, 0, 8, 0, 0, 0, 7, 0, 10, 0x80, 0x05}, FrameNACK},
	{"streams", AppendStreams(nil, []StreamInfo{{1, "live/a"}, {0xdeadbeef, "live/b"}}), FrameStreams},
	{"streams empty", AppendStreams(nil, nil), FrameStreams},
	{"init req", AppendInitReq(nil, InitReq{Name: "live/a"}), FrameInitReq},
	{"init", AppendInit(nil, Init{Status: InitFound, SSRC: 9, Name: "live/a", Tags: core.InitTags{Metadata: []byte{18, 1}, Video: []byte{9, 2, 3}}}), FrameInit},
	{"init unknown", AppendInit(nil, Init{Status: InitUnknown, Name: "x"}), FrameInit},
}

func TestFrameRoundTrip(t *testing.T) {
	for _, tc := range frameCases {
		t.Run(tc.name, func(t *testing.T) {
			typ, payload, err := NewFrameReader(bytes.NewReader(tc.wire), MaxReplyFrame).Next()
			if err != nil || typ != tc.typ {
				t.Fatalf("Next = %s, %v", typ, err)
			}
			var again []byte
			switch typ {
			case FrameHello:
				h, err := ParseHello(payload)
				if err != nil {
					t.Fatal(err)
				}
				again = AppendHello(nil, h)
			case FrameHelloOK:
				h, err := ParseHelloOK(payload)
				if err != nil {
					t.Fatal(err)
				}
				again = AppendHelloOK(nil, h)
			case FrameNACK:
				again = tc.wire
			case FrameStreams:
				l, err := ParseStreams(payload)
				if err != nil {
					t.Fatal(err)
				}
				again = AppendStreams(nil, l)
			case FrameInitReq:
				r, err := ParseInitReq(payload)
				if err != nil {
					t.Fatal(err)
				}
				again = AppendInitReq(nil, r)
			case FrameInit:
				r, err := ParseInit(payload)
				if err != nil {
					t.Fatal(err)
				}
				again = AppendInit(nil, r)
			}
			if !bytes.Equal(again, tc.wire) {
				t.Fatalf("re-encoded % x\nwant        % x", again, tc.wire)
			}
		})
	}
}

func TestInitTagsSurvive(t *testing.T) {
	in := Init{Status: InitFound, SSRC: 5, Name: "live/m", Tags: core.InitTags{Metadata: []byte("meta"), Video: []byte("avc"), Audio: []byte("aac")}}
	_, p, err := NewFrameReader(bytes.NewReader(AppendInit(nil, in)), MaxReplyFrame).Next()
	if err != nil {
		t.Fatal(err)
	}
	out, err := ParseInit(p)
	if err != nil || !reflect.DeepEqual(in, out) {
		t.Fatalf("got %+v, %v", out, err)
	}
}

func TestFrameReaderLimits(t *testing.T) {
	big := AppendFrameHeader(nil, FrameNACK, MaxRequestFrame+1)
	if _, _, err := NewFrameReader(bytes.NewReader(big), MaxRequestFrame).Next(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("oversized frame: %v", err)
	}
	trunc := AppendFrameHeader(nil, FrameNACK, 8)
	if _, _, err := NewFrameReader(bytes.NewReader(trunc), MaxRequestFrame).Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated frame: %v", err)
	}
	if _, _, err := NewFrameReader(bytes.NewReader(nil), MaxRequestFrame).Next(); err != io.EOF {
		t.Fatalf("empty: %v", err)
	}
}

// FuzzFrames feeds arbitrary bytes through the reader and every parser: no
// panic, no allocation beyond the limit.
func FuzzFrames(f *testing.F) {
	for _, tc := range frameCases {
		f.Add(tc.wire)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr := NewFrameReader(bytes.NewReader(b), MaxRequestFrame)
		for {
			typ, p, err := fr.Next()
			if err != nil {
				return
			}
			if len(p) > MaxRequestFrame {
				t.Fatalf("payload %d over limit", len(p))
			}
			switch typ {
			case FrameHello:
				_, _ = ParseHello(p)
			case FrameHelloOK:
				_, _ = ParseHelloOK(p)
			case FrameStreams:
				_, _ = ParseStreams(p)
			case FrameInitReq:
				_, _ = ParseInitReq(p)
			case FrameInit:
				_, _ = ParseInit(p)
			}
		}
	})
}
