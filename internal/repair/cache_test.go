package repair

import (
	"bytes"
	"runtime"
	"testing"
	"time"

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

// The wrap and eviction cases hold for a ring with a maximum age too, when
// every packet is younger than it.
func TestTimedRingWrapAndEviction(t *testing.T) {
	for _, tc := range []struct {
		size  int
		first uint16
		count int
	}{{5000, 65000, 7000}, {1024, 65500, 3000}, {16, 65530, 40}, {100, 0, 50}} {
		r := NewTimedRing(tc.size, 0, time.Hour)
		at := time.Unix(1000, 0)
		for i := 0; i < tc.count; i++ {
			seq := tc.first + uint16(i)
			r.InsertAt(seq, pkt(seq, 1, i%50), at.Add(time.Duration(i)*time.Millisecond))
		}
		last := tc.first + uint16(tc.count-1)
		held := min(tc.size, tc.count)
		for back := 0; back < tc.count+10; back++ {
			seq := last - uint16(back)
			got, ok := r.AppendPacket(nil, seq)
			if want := back < held; ok != want {
				t.Fatalf("size %d: seq %d (%d behind newest): cached=%v, want %v", tc.size, seq, back, ok, want)
			}
			if ok && !bytes.Equal(got, pkt(seq, 1, (tc.count-1-back)%50)) {
				t.Fatalf("seq %d: wrong bytes", seq)
			}
		}
		if r.Held() != held {
			t.Fatalf("size %d: held %d, want %d", tc.size, r.Held(), held)
		}
	}
}

// A ring with a maximum age keeps the packets of the last maxAge only, grows
// to what that takes (not to its limit), gives buffers back when the rate
// falls, and keeps a late packet inside the window.
func TestTimedRingKeepsByAge(t *testing.T) {
	const rate = 100 // packets per second
	r := NewTimedRing(5000, 1280, time.Second)
	start := time.Unix(1000, 0)
	at := func(i int) time.Time { return start.Add(time.Duration(i) * time.Second / rate) }
	for i := range 1000 {
		if i == 990 {
			continue // lost upstream, arrives late below
		}
		r.InsertAt(uint16(i), pkt(uint16(i), 1, 1000), at(i))
	}
	r.InsertAt(990, pkt(990, 1, 1000), at(999))
	// Inserting 999 at 9.99 s expired every packet that arrived before
	// 8.99 s: 899 is kept (exactly 1 s old), 898 is gone.
	for seq, want := range map[uint16]bool{0: false, 500: false, 898: false, 899: true, 990: true, 999: true} {
		if r.Has(seq) != want {
			t.Errorf("seq %d cached=%v, want %v", seq, !want, want)
		}
	}
	if h := r.Held(); h != 101 {
		t.Errorf("held %d packets, want 101 (one second)", h)
	}
	if n := r.Len(); n != 128 {
		t.Errorf("ring grew to %d slots, want 128 (the next power of two over one second's packets)", n)
	}
	// The rate drops to 1 packet per second: buffers beyond the minSpare
	// spares go back to the GC.
	before := r.Bytes()
	for i := range 5 {
		seq := uint16(1000 + i)
		r.InsertAt(seq, pkt(seq, 1, 1000), start.Add(20*time.Second+time.Duration(i)*time.Second))
	}
	if r.Held() > 2 || r.Bytes() > r.Len()*slotSize+(2+minSpare)*1280+cap(r.free)*24 {
		t.Errorf("after the rate fell: held %d, %d bytes (was %d)", r.Held(), r.Bytes(), before)
	}
}

// A burst (a keyframe) and steady packets, at a steady state, allocate
// nothing.
func TestTimedRingInsertDoesNotAllocate(t *testing.T) {
	r := NewTimedRing(5000, 1280, time.Second)
	p := pkt(0, 1, 1180)
	now := time.Unix(1000, 0)
	seq := uint16(0)
	frame := func() {
		// 30 frames a second, every 30th a burst of 60 packets.
		n := 2
		if seq%(30*2) == 0 {
			n = 60
		}
		for range n {
			r.InsertAt(seq, p, now)
			seq++
		}
		now = now.Add(time.Second / 30)
	}
	for range 300 { // warm up: ten seconds
		frame()
	}
	if a := testing.AllocsPerRun(300, frame); a != 0 {
		t.Fatalf("%.2f allocations per frame", a)
	}
}

// What a cache of many streams holds: 100 streams of 600 kbit/s (1200-byte
// packets, 62.5 a second) for 90 s, with the count-bounded ring of
// cache_packets 5000 (preallocated, so one ring tells) and with the timed
// ring of cache_duration 5 s (filled, and the heap measured).
func TestCacheMemoryManyStreams(t *testing.T) {
	const streams, pps, seconds = 100, 62.5, 90
	countHeld := streams * NewRing(5000, 1280).Bytes()
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	rings := make([]*Ring, streams)
	p := pkt(0, 1, 1188)
	timedHeld := 0
	for i := range rings {
		rings[i] = NewTimedRing(5000, 1280, 5*time.Second)
		now := time.Unix(1000, 0)
		for k := range int(pps * seconds) {
			rings[i].InsertAt(uint16(k), p, now.Add(time.Duration(float64(k)/pps*float64(time.Second))))
		}
		timedHeld += rings[i].Bytes()
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	runtime.KeepAlive(rings)
	timedHeap := int64(m1.HeapAlloc) - int64(m0.HeapAlloc)
	t.Logf("%d streams × %.0f kbit/s for %d s: cache_packets 5000 alone: %d MB; cache_duration 5s: %.1f MB held (heap +%.1f MB)",
		streams, pps*1200*8/1000, seconds, countHeld>>20, float64(timedHeld)/(1<<20), float64(timedHeap)/(1<<20))
	// 5 s of 100 streams' packets is 100 × 313 × 1280 B ≈ 38 MB; allow for
	// the power-of-two slots and the spare buffers.
	if timedHeld > 60<<20 || timedHeap > 60<<20 {
		t.Fatalf("timed cache holds %d MB (heap +%d MB)", timedHeld>>20, timedHeap>>20)
	}
}

func BenchmarkTimedRingInsert(b *testing.B) {
	r := NewTimedRing(5000, 1280, 5*time.Second)
	p := pkt(0, 1, 1180)
	now := time.Unix(1000, 0)
	b.ReportAllocs()
	b.SetBytes(int64(len(p)))
	seq := uint16(0)
	for b.Loop() {
		r.InsertAt(seq, p, now)
		now = now.Add(time.Millisecond) // 1000 packets a second
		seq++
	}
}
