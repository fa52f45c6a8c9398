package repair

import (
	"bytes"
	"testing"

	"github.com/mediapipe/mediapipe/core/media/rtpheader"
)

func pkt(seq uint16, ssrc uint32, size int) []byte {
	b := make([]byte, rtpheader.Size+size)
	rtpheader.Put(b, rtpheader.Header{PayloadType: 100, Seq: seq, SSRC: ssrc})
	for i := 12; i < len(b); i++ {
		b[i] = byte(int(seq) + i)
	}
	return b
}

func TestRingWrapAndEviction(t *testing.T) {
	for _, tc := range []struct {
		name  string
		size  int
		first uint16
		count int
	}{
		{"across wrap, odd size", 5000, 65000, 7000},
		{"across wrap, power of two", 1024, 65500, 3000},
		{"small ring", 16, 65530, 40},
		{"no wrap", 100, 0, 50},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRing(tc.size, 0)
			for i := 0; i < tc.count; i++ {
				seq := tc.first + uint16(i)
				r.Insert(seq, pkt(seq, 1, i%50))
			}
			last := tc.first + uint16(tc.count-1)
			if n, ok := r.Newest(); !ok || n != last {
				t.Fatalf("newest = %d %v, want %d", n, ok, last)
			}
			held := min(tc.size, tc.count)
			for back := 0; back < tc.count+10; back++ {
				seq := last - uint16(back)
				got, ok := r.AppendPacket(nil, seq)
				want := back < held
				if ok != want {
					t.Fatalf("seq %d (%d behind newest): cached=%v, want %v", seq, back, ok, want)
				}
				if ok && !bytes.Equal(got, pkt(seq, 1, (tc.count-1-back)%50)) {
					t.Fatalf("seq %d: wrong bytes", seq)
				}
			}
			// Ahead of the newest is never cached.
			for ahead := 1; ahead < 100; ahead++ {
				if r.Has(last + uint16(ahead)) {
					t.Fatalf("seq %d ahead of newest reported cached", last+uint16(ahead))
				}
			}
		})
	}
}

func TestRingEmptyAndRestart(t *testing.T) {
	r := NewRing(100, 64)
	if r.Has(0) || r.Has(65535) {
		t.Fatal("empty ring has a packet")
	}
	r.Insert(10, pkt(10, 1, 5))
	r.Insert(12, pkt(12, 1, 5)) // 11 lost upstream
	if !r.Has(10) || r.Has(11) || !r.Has(12) {
		t.Fatal("gap not kept")
	}
	// A late insert inside the window lands in its slot.
	r.Insert(11, pkt(11, 1, 5))
	if !r.Has(11) {
		t.Fatal("late insert inside the window lost")
	}
	// A sender restarting far behind: the ring starts over.
	r.Insert(40000, pkt(40000, 1, 5))
	r.Insert(40001, pkt(40001, 1, 5))
	if r.Has(10) || !r.Has(40000) || !r.Has(40001) {
		t.Fatal("restart not handled")
	}
}

func TestRingClamp(t *testing.T) {
	if n := NewRing(1, 0).Len(); n != MinCachePackets {
		t.Fatalf("len %d", n)
	}
	if n := NewRing(1<<20, 0).Len(); n != MaxCachePackets {
		t.Fatalf("len %d", n)
	}
}

func BenchmarkRingInsert(b *testing.B) {
	r := NewRing(5000, 1280)
	p := pkt(0, 1, 1180)
	b.ReportAllocs()
	b.SetBytes(int64(len(p)))
	seq := uint16(0)
	for b.Loop() {
		r.Insert(seq, p)
		seq++
	}
}

func BenchmarkRingLookup(b *testing.B) {
	r := NewRing(5000, 1280)
	p := pkt(0, 1, 1180)
	for i := 0; i < 5000; i++ {
		r.Insert(uint16(60000+i), p)
	}
	dst := make([]byte, 0, 2048)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		var ok bool
		dst, ok = r.AppendPacket(dst[:0], uint16(60000+i%5000))
		if !ok {
			b.Fatal("miss")
		}
		i++
	}
}
