package nack

import (
	"bytes"
	"errors"
	"slices"
	"testing"
)

// cases feeds the round-trip test, the benchmark and the fuzz seeds.
var cases = []struct {
	name    string
	ssrc    uint32
	seqs    []uint16 // missing sequence numbers, any order
	entries []Entry  // what FromSeqs must make of them
	wire    []byte   // Marshal of entries
}{
	{
		name: "single", ssrc: 0x01020304, seqs: []uint16{100},
		entries: []Entry{{0x01020304, 100, 0}},
		wire:    []byte{1, 2, 3, 4, 0, 100, 0, 0},
	},
	{
		name: "pid and bitmask", ssrc: 7, seqs: []uint16{10, 11, 13, 26},
		// 11 = bit 0, 13 = bit 2, 26 = bit 15 (RFC 4585 §6.2.1)
		entries: []Entry{{7, 10, 1<<0 | 1<<2 | 1<<15}},
		wire:    []byte{0, 0, 0, 7, 0, 10, 0x80, 0x05},
	},
	{
		name: "two entries", ssrc: 7, seqs: []uint16{27, 10},
		entries: []Entry{{7, 10, 0}, {7, 27, 0}},
		wire:    []byte{0, 0, 0, 7, 0, 10, 0, 0, 0, 0, 0, 7, 0, 27, 0, 0},
	},
	{
		name: "across wrap", ssrc: 9, seqs: []uint16{1, 65534, 0, 65535},
		entries: []Entry{{9, 65534, 0b111}},
		wire:    []byte{0, 0, 0, 9, 0xff, 0xfe, 0, 7},
	},
	{
		name: "duplicates", ssrc: 9, seqs: []uint16{5, 5, 6, 6},
		entries: []Entry{{9, 5, 1}},
		wire:    []byte{0, 0, 0, 9, 0, 5, 0, 1},
	},
	{
		name: "full run", ssrc: 0xffffffff, seqs: seqRange(65530, 40),
		entries: []Entry{{0xffffffff, 65530, 0xffff}, {0xffffffff, 11, 0xffff}, {0xffffffff, 28, 0x1f}},
		wire: []byte{
			0xff, 0xff, 0xff, 0xff, 0xff, 0xfa, 0xff, 0xff,
			0xff, 0xff, 0xff, 0xff, 0, 11, 0xff, 0xff,
			0xff, 0xff, 0xff, 0xff, 0, 28, 0, 0x1f,
		},
	},
}

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

func TestCases(t *testing.T) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			entries := FromSeqs(nil, tc.ssrc, slices.Clone(tc.seqs))
			if !slices.Equal(entries, tc.entries) {
				t.Fatalf("FromSeqs = %+v, want %+v", entries, tc.entries)
			}
			wire := Marshal(nil, entries)
			if !bytes.Equal(wire, tc.wire) {
				t.Fatalf("Marshal = % x, want % x", wire, tc.wire)
			}
			back, err := Unmarshal(wire, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(back, tc.entries) {
				t.Fatalf("Unmarshal = %+v, want %+v", back, tc.entries)
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

func TestUnmarshalErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		err  error
	}{
		{"empty", nil, ErrEmpty},
		{"short", []byte{1, 2, 3}, ErrLength},
		{"ragged", make([]byte, 12), ErrLength},
		{"too many", make([]byte, (MaxEntries+1)*EntrySize), ErrTooMany},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Unmarshal(tc.in, nil); !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
		})
	}
	if got, err := Unmarshal(make([]byte, MaxEntries*EntrySize), nil); err != nil || len(got) != MaxEntries {
		t.Fatalf("max batch: %d entries, %v", len(got), err)
	}
}

func TestLess(t *testing.T) {
	for _, tc := range []struct {
		a, b uint16
		want bool
	}{
		{1, 2, true}, {2, 1, false}, {65535, 0, true}, {0, 65535, false}, {7, 7, false}, {0, 32767, true},
	} {
		if got := Less(tc.a, tc.b); got != tc.want {
			t.Errorf("Less(%d, %d) = %v", tc.a, tc.b, got)
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
		back, err := Unmarshal(Marshal(nil, entries), nil)
		if err != nil && len(entries) <= MaxEntries {
			t.Fatal(err)
		}
		if got := Seqs(nil, back); !slices.Equal(got, want) {
			t.Fatalf("round trip of %d seqs from %d: got %v want %v", n, base, got, want)
		}
	}
}

func FuzzNACK(f *testing.F) {
	for _, tc := range cases {
		f.Add(tc.wire)
	}
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := Unmarshal(b, nil)
		if err != nil {
			return
		}
		if again := Marshal(nil, entries); !bytes.Equal(again, b) {
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

func BenchmarkMarshal(b *testing.B) {
	entries := cases[len(cases)-1].entries
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = Marshal(buf[:0], entries)
	}
}

func BenchmarkFromSeqsMarshal(b *testing.B) {
	src := seqRange(65530, 40)
	seqs := make([]uint16, len(src))
	entries := make([]Entry, 0, 16)
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		copy(seqs, src)
		entries = FromSeqs(entries[:0], 1, seqs)
		buf = Marshal(buf[:0], entries)
	}
}

func BenchmarkUnmarshal(b *testing.B) {
	wire := cases[len(cases)-1].wire
	entries := make([]Entry, 0, 16)
	b.ReportAllocs()
	for b.Loop() {
		entries, _ = Unmarshal(wire, entries[:0])
	}
}
