package fec

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/stagetest"
)

// TestJunkParityBounded: a flood of made-up parity on a stream (right SSRC,
// any group, any size) holds no more than max_groups groups of at most 32
// shards of 4 KiB, is counted, and costs the real stream no packet.
func TestJunkParityBounded(t *testing.T) {
	var cfg DecoderConfig
	stagetest.Decode(t, "fec-decoder", nil, &cfg)
	st, _ := NewDecoder(&cfg, core.TestEnv("fec-decoder"))
	d := st.(*Decoder)
	out := stagetest.NewCollector()
	d.out = out
	stream := core.NewStream("live/junk")
	d.handle(core.NewEvent(core.EventStart, stream))
	rng := rand.New(rand.NewPCG(1, 1))
	feed := func(b []byte) {
		p := core.NewPacket(len(b))
		copy(p.Data, b)
		p.Stream = stream
		d.handle(p)
	}
	const sources = 2000
	for i := range sources {
		feed(source(0, i, 200))
		for range 10 {
			l := 14 + rng.IntN(MaxShard-13)
			b := make([]byte, parityHead+l)
			putParityHeader(b, 101, 0, 0, testSSRC, uint16(i+rng.IntN(300)-150), 1+rng.IntN(MaxGroup), 1+rng.IntN(MaxParity), 0, l)
			b[rtpHeader+8] = byte(rng.IntN(MaxParity))
			if rng.IntN(4) == 0 {
				binary.BigEndian.PutUint16(b[rtpHeader+10:], uint16(rng.IntN(1<<16))) // a lying length
			}
			for j := parityHead; j < len(b); j++ {
				b[j] = byte(rng.Uint32())
			}
			feed(b)
		}
	}
	ds := d.streams[stream]
	if len(ds.groups) != cfg.MaxGroups {
		t.Fatalf("%d group slots, want max_groups %d", len(ds.groups), cfg.MaxGroups)
	}
	for _, g := range ds.groups {
		for _, p := range g.parity {
			if cap(p) > MaxShard {
				t.Fatalf("a parity buffer of %d bytes", cap(p))
			}
		}
	}
	for _, sl := range ds.ring {
		if cap(sl.data) > MaxShard {
			t.Fatalf("a window slot of %d bytes", cap(sl.data))
		}
	}
	if n := d.junk.Value() + d.stale.Value() + d.dupParity.Value(); n == 0 {
		t.Error("no junk parity counted")
	}
	data := out.Data()
	seen := map[uint16]bool{}
	for _, p := range data {
		seen[seqOf(p.Data)] = true
		if p.Data[1]&0x7f == 101 {
			t.Fatal("parity passed")
		}
	}
	for i := range sources {
		if !seen[uint16(i)] {
			t.Fatalf("source %d did not pass", i)
		}
	}
	t.Logf("junk %v stale %v duplicate %v unrecoverable %v; %d packets out for %d sources",
		d.junk.Value(), d.stale.Value(), d.dupParity.Value(), d.unrecoverable.Value(), len(data), sources)
}

// TestForgedParityCannotClaimAGroup: a hostile sender that knows the
// stream's SSRC sends parity claiming the bases of the genuine groups with
// another geometry, ahead of the genuine parity. The genuine parity still
// recovers its group byte for byte, every source packet passes the moment
// it arrives (the decoder holds no source packet back, forged parity or
// not), and the forged parity is counted.
func TestForgedParityCannotClaimAGroup(t *testing.T) {
	c := fecCase{group: 10, overhead: 0.2, n: 40, loseSrc: []int{3, 17, 25, 38}}
	src := c.sources()
	var wire [][]byte
	for _, p := range encode(t, c.group, c.overhead, src) {
		wire = append(wire, p.Data)
	}
	wire = c.wire(wire)

	var cfg DecoderConfig
	stagetest.Decode(t, "fec-decoder", nil, &cfg)
	st, _ := NewDecoder(&cfg, core.TestEnv("fec-decoder"))
	d := st.(*Decoder)
	out := stagetest.NewCollector()
	d.out = out
	stream := core.NewStream("live/forged")
	d.handle(core.NewEvent(core.EventStart, stream))
	feed := func(b []byte) {
		p := core.NewPacket(len(b))
		copy(p.Data, b)
		p.Stream = stream
		d.handle(p)
	}
	rng := rand.New(rand.NewPCG(2, 2))
	forged := 0
	forge := func(base uint16) {
		// Every geometry but the genuine one, for the base; then parity
		// far ahead of the stream, which holds a slot longest.
		for _, k := range []int{5, 12, 20} {
			l := 1200 + rng.IntN(200)
			b := make([]byte, parityHead+l)
			putParityHeader(b, 101, 0, 0, testSSRC, base, k, 2, 0, l)
			for j := parityHead; j < len(b); j++ {
				b[j] = byte(rng.Uint32())
			}
			feed(b)
			forged++
		}
		b := make([]byte, parityHead+600)
		putParityHeader(b, 101, 0, 0, testSSRC, base+100, 10, 2, 1, 600)
		feed(b)
		forged++
	}
	for _, b := range wire {
		if b[1]&0x7f == 101 {
			f, _ := parseParity(b, 101)
			forge(f.base) // the stranger's parity comes first
			feed(b)
			continue
		}
		before := len(out.Data())
		feed(b)
		if got := out.Data(); len(got) <= before || !bytes.Equal(got[before].Data, b) {
			t.Fatalf("source %d held back", seqOf(b))
		}
	}
	seen := checkOut(t, out.Data(), src, 0)
	for _, i := range c.loseSrc {
		if seen[uint16(i)] != 1 {
			t.Fatalf("lost source %d recovered %d times, want once: the forged parity kept the genuine group out", i, seen[uint16(i)])
		}
	}
	if v := core.CounterValue(d.recovered); v != float64(len(c.loseSrc)) {
		t.Fatalf("recovered %v, want %d", v, len(c.loseSrc))
	}
	// A parity whose own SSRC is not tied to the one it claims to protect
	// is junk at once.
	junk := d.junk.Value()
	b := make([]byte, parityHead+600)
	putParityHeader(b, 101, 0, 0, testSSRC, 40, 10, 2, 0, 600)
	b[11] ^= 0xff
	feed(b)
	if d.junk.Value() != junk+1 {
		t.Fatal("parity with an unrelated SSRC not counted as junk")
	}
	t.Logf("%d forged parity: junk %v, unrecoverable %v", forged, d.junk.Value(), d.unrecoverable.Value())
}
