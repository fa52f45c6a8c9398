package fec

import (
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
