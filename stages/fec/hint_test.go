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
