package fec

import (
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/stagetest"
)

// hints records the FEC hint of every source packet passed on.
type hints struct {
	seqs []uint16
	fec  []core.FECHint
}

func (h *hints) Emit(p *core.Packet) {
	if p.Event == core.EventData && !p.Rebuilt {
		h.seqs = append(h.seqs, seqOf(p.Data))
		h.fec = append(h.fec, p.FEC)
	}
	p.Release()
}

// TestDecoderHint: before any parity a packet says nothing (rtp-reorder
// asks at once); once a group's parity has come, each packet names the
// open group (From: the next group's base) and how long its parity may
// still take, from the measured lag (a packet every 2 ms, parity after
// the 16th: 30 ms after the group's first packet); with parity gone for
// longer than parityFresh the hint is off again.
func TestDecoderHint(t *testing.T) {
	var src [][]byte
	for i := range 48 {
		src = append(src, source(1000, i, 200))
	}
	sent := encode(t, 16, 0.125, src)
	var cfg DecoderConfig
	stagetest.Decode(t, "fec-decoder", nil, &cfg)
	env := core.TestEnv("fec-decoder")
	clock := stagetest.NewFakeClock(time.Unix(1_700_000_000, 0))
	env.Clock = clock
	st, err := NewDecoder(&cfg, env)
	if err != nil {
		t.Fatal(err)
	}
	d := st.(*Decoder)
	out := &hints{}
	d.out = out
	stream := core.NewStream("live/fec")
	d.handle(core.NewEvent(core.EventStart, stream))
	feed := func(b []byte) {
		p := core.NewPacket(len(b))
		copy(p.Data, b)
		p.Stream = stream
		d.handle(p)
	}
	for _, b := range sent {
		if b.Data[1]&0x7f != 101 {
			clock.Advance(2 * time.Millisecond)
		}
		feed(b.Data)
	}
	if len(out.fec) != 48 {
		t.Fatalf("%d source packets out", len(out.fec))
	}
	for i := range 16 {
		if out.fec[i].On {
			t.Fatalf("packet %d before any parity has hint %+v", i, out.fec[i])
		}
	}
	// Lag 30 ms, deviation 15 ms: 30 + 60 + 10 ms of margin after the
	// open group's first packet.
	want := 30*time.Millisecond + 4*15*time.Millisecond + lagMargin
	for i := 16; i < 32; i++ {
		h := out.fec[i]
		if !h.On || h.From != 1016 || h.Hold != want-time.Duration(i-16)*2*time.Millisecond {
			t.Fatalf("packet %d (seq %d): hint %+v, want from 1016 hold %v", i, out.seqs[i], h, want-time.Duration(i-16)*2*time.Millisecond)
		}
	}
	if h := out.fec[32]; !h.On || h.From != 1032 {
		t.Fatalf("packet 32: hint %+v, want from 1032", h)
	}
	clock.Advance(parityFresh + time.Millisecond)
	feed(source(1000, 48, 200))
	if h := out.fec[len(out.fec)-1]; h.On {
		t.Fatalf("parity quiet for %v: hint %+v", parityFresh, h)
	}
}

// hintRig is a decoder on a fake clock whose source packets' hints are
// recorded.
func hintRig(t *testing.T) (feed func([]byte), out *hints, clock *stagetest.FakeClock) {
	var cfg DecoderConfig
	stagetest.Decode(t, "fec-decoder", nil, &cfg)
	env := core.TestEnv("fec-decoder")
	clock = stagetest.NewFakeClock(time.Unix(1_700_000_000, 0))
	env.Clock = clock
	st, err := NewDecoder(&cfg, env)
	if err != nil {
		t.Fatal(err)
	}
	d := st.(*Decoder)
	out = &hints{}
	d.out = out
	stream := core.NewStream("live/fec")
	d.handle(core.NewEvent(core.EventStart, stream))
	return func(b []byte) {
		p := core.NewPacket(len(b))
		copy(p.Data, b)
		p.Stream = stream
		d.handle(p)
	}, out, clock
}

// TestDecoderHintWaitsForLastParity: a group with more losses than its
// first parity can rebuild stays open until its second parity comes (and
// rebuilds it): the next group's packets still name it as open, so
// rtp-reorder does not ask for what the second parity rebuilds.
func TestDecoderHintWaitsForLastParity(t *testing.T) {
	var src [][]byte
	for i := range 32 {
		src = append(src, source(1000, i, 200))
	}
	sent := encode(t, 16, 0.125, src) // 2 parity a group
	feed, out, clock := hintRig(t)
	var second []byte
	parity := 0
	for _, b := range sent {
		if b.Data[1]&0x7f == 101 {
			if parity++; parity == 2 {
				second = b.Data // held back: comes after 1016
				continue
			}
			feed(b.Data)
			continue
		}
		seq := seqOf(b.Data)
		if seq == 1003 || seq == 1007 {
			continue // lost: two losses, one parity so far
		}
		clock.Advance(2 * time.Millisecond)
		feed(b.Data)
		if seq == 1016 {
			if h := out.fec[len(out.fec)-1]; !h.On || h.From != 1000 {
				t.Fatalf("1016 after one parity of two for two losses: hint %+v, want from 1000", h)
			}
			feed(second)
		}
		if seq == 1017 {
			if h := out.fec[len(out.fec)-1]; !h.On || h.From != 1016 {
				t.Fatalf("1017 after the group was rebuilt: hint %+v, want from 1016", h)
			}
		}
	}
}

// TestDecoderHintClockBack: a clock that steps back (a wall clock set back
// an hour) does not make a hold longer than the measured lag allows.
func TestDecoderHintClockBack(t *testing.T) {
	var src [][]byte
	for i := range 48 {
		src = append(src, source(1000, i, 200))
	}
	sent := encode(t, 16, 0.125, src)
	feed, out, clock := hintRig(t)
	for _, b := range sent {
		if b.Data[1]&0x7f != 101 {
			clock.Advance(2 * time.Millisecond)
		}
		if seqOf(b.Data) == 1018 && b.Data[1]&0x7f != 101 {
			clock.Advance(-time.Hour)
		}
		feed(b.Data)
	}
	if len(out.fec) != 48 {
		t.Fatalf("%d source packets out", len(out.fec))
	}
	for i, h := range out.fec {
		if h.Hold < 0 || h.Hold > maxLag {
			t.Fatalf("packet %d (seq %d): hold %v after the clock went back", i, out.seqs[i], h.Hold)
		}
	}
}

// TestDecoderHintSeqJump: a sender restarted with the same SSRC and a
// sequence far from the old one (more than half the 16-bit space on)
// turns the hint off until its own parity comes: the old open group does
// not hold the new stream's gaps.
func TestDecoderHintSeqJump(t *testing.T) {
	var src [][]byte
	for i := range 32 {
		src = append(src, source(1000, i, 200))
	}
	sent := encode(t, 16, 0.125, src)
	feed, out, clock := hintRig(t)
	for _, b := range sent {
		if b.Data[1]&0x7f != 101 {
			clock.Advance(2 * time.Millisecond)
		}
		feed(b.Data)
	}
	if h := out.fec[len(out.fec)-1]; !h.On {
		t.Fatalf("no hint before the jump: %+v", h)
	}
	for i := range 4 {
		clock.Advance(2 * time.Millisecond)
		feed(source(1000, 40000+i, 200))
		if h := out.fec[len(out.fec)-1]; h.On {
			t.Fatalf("seq %d after the jump: hint %+v", out.seqs[len(out.seqs)-1], h)
		}
	}
}
