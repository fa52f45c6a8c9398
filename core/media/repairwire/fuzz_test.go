package repairwire

import (
	"bytes"
	"fmt"
	"testing"
)

// reencode parses a payload of type typ and encodes what it read again as a
// whole frame: for a valid payload, the frame it came in.
func reencode(typ FrameType, p []byte) ([]byte, error) {
	switch typ {
	case FrameHello:
		h, err := ParseHello(p)
		return AppendHello(nil, h), err
	case FrameHelloOK:
		h, err := ParseHelloOK(p)
		return AppendHelloOK(nil, h), err
	case FrameNACK, FrameGone, FrameRefused:
		e, err := ParseNACK(p, nil)
		return AppendFrame(nil, typ, AppendNACK(nil, e)), err
	case FrameStreams:
		l, err := ParseStreams(p)
		return AppendStreams(nil, l), err
	case FrameInitReq:
		r, err := ParseInitReq(p)
		return AppendInitReq(nil, r), err
	case FrameInit:
		r, err := ParseInit(p)
		return AppendInit(nil, r), err
	case FrameReport:
		r, err := ParseReport(p)
		if err != nil {
			return nil, err
		}
		return AppendReport(nil, r)
	case FrameRepair, FrameStreamsReq:
		return AppendFrame(nil, typ, p), nil // opaque or empty payloads
	}
	return nil, fmt.Errorf("%w: unknown %s", ErrMalformed, typ)
}

// fuzzPayloads fuzzes the parser of one frame type with the payloads of the
// table's frames of that type as seeds: a payload it accepts must encode
// back to the same bytes.
func fuzzPayloads(f *testing.F, typ FrameType) {
	for _, tc := range frameCases {
		if tc.typ == typ {
			f.Add(tc.wire[FrameHeaderSize:])
		}
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		again, err := reencode(typ, p)
		if err == nil && !bytes.Equal(again, AppendFrame(nil, typ, p)) {
			t.Fatalf("%s % x re-encodes to % x", typ, p, again)
		}
	})
}

func FuzzHello(f *testing.F)   { fuzzPayloads(f, FrameHello) }
func FuzzHelloOK(f *testing.F) { fuzzPayloads(f, FrameHelloOK) }
func FuzzStreams(f *testing.F) { fuzzPayloads(f, FrameStreams) }
func FuzzInitReq(f *testing.F) { fuzzPayloads(f, FrameInitReq) }
func FuzzInit(f *testing.F)    { fuzzPayloads(f, FrameInit) }

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
			_, _ = reencode(typ, p)
		}
	})
}

func FuzzNACK(f *testing.F) {
	for _, tc := range nackCases {
		f.Add(tc.wire)
	}
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := ParseNACK(b, nil)
		if err != nil {
			return
		}
		if again := AppendNACK(nil, entries); !bytes.Equal(again, b) {
			t.Fatalf("re-marshal differs: % x vs % x", again, b)
		}
		// Every entry's seqs re-encode to the same entry.
		for _, e := range entries {
			seqs := e.AppendSeqs(nil)
			if len(seqs) != e.Count() {
				t.Fatalf("count %d vs %d seqs", e.Count(), len(seqs))
			}
			re := FromSeqs(nil, e.SSRC, seqs)
			if len(re) != 1 || re[0] != e {
				t.Fatalf("entry %+v re-encodes to %+v", e, re)
			}
		}
	})
}

func FuzzReport(f *testing.F) { fuzzPayloads(f, FrameReport) }
