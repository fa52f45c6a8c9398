package repairwire

import (
	"bytes"
	"errors"
	"slices"
	"testing"
)

func seqRange(first uint16, n int) []uint16 {
	out := make([]uint16, n)
	for i := range out {
		out[i] = first + uint16(i)
	}
	return out
}

// sortedUnique returns seqs in wrap-aware order without repeats.
func sortedUnique(seqs []uint16) []uint16 {
	s := slices.Clone(seqs)
	ref := s[0]
	slices.SortFunc(s, func(a, b uint16) int { return int(int16(a-ref)) - int(int16(b-ref)) })
	return slices.Compact(s)
}

func TestNACKCases(t *testing.T) {
	for _, tc := range nackCases {
		t.Run(tc.name, func(t *testing.T) {
			entries := FromSeqs(nil, tc.ssrc, slices.Clone(tc.seqs))
			if !slices.Equal(entries, tc.entries) {
				t.Fatalf("FromSeqs = %+v, want %+v", entries, tc.entries)
			}
			wire := AppendNACK(nil, entries)
			if !bytes.Equal(wire, tc.wire) {
				t.Fatalf("AppendNACK = % x, want % x", wire, tc.wire)
			}
			back, err := ParseNACK(wire, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(back, tc.entries) {
				t.Fatalf("ParseNACK = %+v, want %+v", back, tc.entries)
			}
			seqs := Seqs(nil, back)
			if want := sortedUnique(tc.seqs); !slices.Equal(seqs, want) {
				t.Fatalf("Seqs = %v, want %v", seqs, want)
			}
			n := 0
			for _, e := range back {
				n += e.Count()
			}
			if n != len(seqs) {
				t.Fatalf("Count total %d, want %d", n, len(seqs))
			}
		})
	}
}

func TestParseNACKErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		err  error
	}{
		{"empty", nil, ErrNACKEmpty},
		{"short", []byte{1, 2, 3}, ErrNACKLength},
		{"ragged", make([]byte, 12), ErrNACKLength},
		{"too many", make([]byte, (MaxNACKEntries+1)*NACKEntrySize), ErrNACKTooMany},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseNACK(tc.in, nil); !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
		})
	}
	if got, err := ParseNACK(make([]byte, MaxNACKEntries*NACKEntrySize), nil); err != nil || len(got) != MaxNACKEntries {
		t.Fatalf("max batch: %d entries, %v", len(got), err)
	}
}

func TestSeqLess(t *testing.T) {
	for _, tc := range []struct {
		a, b uint16
		want bool
	}{
		{1, 2, true}, {2, 1, false}, {65535, 0, true}, {0, 65535, false}, {7, 7, false}, {0, 32767, true},
	} {
		if got := SeqLess(tc.a, tc.b); got != tc.want {
			t.Errorf("SeqLess(%d, %d) = %v", tc.a, tc.b, got)
		}
	}
}

// TestRoundTripRandomSets checks every set within one window survives
// seqs → entries → wire → entries → seqs.
func TestRoundTripRandomSets(t *testing.T) {
	state := uint32(1)
	rnd := func() uint32 { state = state*1664525 + 1013904223; return state >> 8 }
	for i := 0; i < 2000; i++ {
		base := uint16(rnd())
		n := 1 + int(rnd()%200)
		seqs := make([]uint16, n)
		for j := range seqs {
			seqs[j] = base + uint16(rnd()%3000)
		}
		want := sortedUnique(append([]uint16{base}, seqs...))
		entries := FromSeqs(nil, 42, append([]uint16{base}, seqs...))
		back, err := ParseNACK(AppendNACK(nil, entries), nil)
		if err != nil && len(entries) <= MaxNACKEntries {
			t.Fatal(err)
		}
		if got := Seqs(nil, back); !slices.Equal(got, want) {
			t.Fatalf("round trip of %d seqs from %d: got %v want %v", n, base, got, want)
		}
	}
}

func BenchmarkAppendNACK(b *testing.B) {
	entries := nackCases[len(nackCases)-1].entries
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendNACK(buf[:0], entries)
	}
}

func BenchmarkFromSeqsAppendNACK(b *testing.B) {
	src := seqRange(65530, 40)
	seqs := make([]uint16, len(src))
	entries := make([]NACKEntry, 0, 16)
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		copy(seqs, src)
		entries = FromSeqs(entries[:0], 1, seqs)
		buf = AppendNACK(buf[:0], entries)
	}
}

func BenchmarkParseNACK(b *testing.B) {
	wire := nackCases[len(nackCases)-1].wire
	entries := make([]NACKEntry, 0, 16)
	b.ReportAllocs()
	for b.Loop() {
		entries, _ = ParseNACK(wire, entries[:0])
	}
}
