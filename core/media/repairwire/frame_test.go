package repairwire

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	for _, tc := range frameCases {
		t.Run(tc.name, func(t *testing.T) {
			typ, payload, err := NewFrameReader(bytes.NewReader(tc.wire), MaxReplyFrame).Next()
			if err != nil || typ != tc.typ {
				t.Fatalf("Next = %s, %v", typ, err)
			}
			again, err := reencode(typ, payload)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, tc.wire) {
				t.Fatalf("re-encoded % x\nwant        % x", again, tc.wire)
			}
		})
	}
}

func TestInitTagsSurvive(t *testing.T) {
	in := Init{Status: InitFound, SSRC: 5, Name: "live/m", Tags: InitTags{Metadata: []byte("meta"), Video: []byte("avc"), Audio: []byte("aac")}}
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
