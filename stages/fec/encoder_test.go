package fec

import (
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/stagetest"
)

func parityCount(ps []stagetest.Captured, s *core.Stream) (n int) {
	for _, p := range ps {
		if p.Stream == s && p.Event == core.EventData && p.Data[1]&0x7f == 101 {
			n++
		}
	}
	return n
}

// TestMaxWait: a group that does not fill within max_wait gets its parity
// then, over the packets so far; the source packets went on at once.
func TestMaxWait(t *testing.T) {
	env := core.TestEnv("fec-encoder")
	clock := stagetest.NewFakeClock(time.Unix(0, 0))
	env.Clock = clock
	h := stagetest.Start(t, stagetest.Build(t, "fec-encoder", map[string]any{"max_wait": "20ms"}, env), env, false)
	s := h.StartStream("live/wait")
	for i := range 3 {
		h.SendData(s, 0, 0, source(500, i, 300))
	}
	if got := h.Out.WaitData(3, 5*time.Second); len(got) != 3 || parityCount(got, s) != 0 {
		t.Fatalf("%d packets out before max_wait, want the 3 sources alone", len(got))
	}
	clock.Advance(19 * time.Millisecond)
	clock.Advance(time.Millisecond)
	got := h.Out.WaitData(4, 5*time.Second)
	if len(got) != 4 || parityCount(got, s) != 1 {
		t.Fatalf("%d packets out after max_wait, want the 3 sources and 1 parity", len(got))
	}
	f, ok := parseParity(got[3].Data, 101)
	if !ok || f.k != 3 || f.m != 1 || f.base != 500 || f.ssrc != testSSRC {
		t.Fatalf("parity header %+v (%v)", f, ok)
	}
}

// TestSetOverhead: the controller's per-stream overhead applies from the
// next group, only to its stream; a reload changes the default for the
// others; a negative value returns a stream to the default; 0 sends none.
func TestSetOverhead(t *testing.T) {
	env := core.TestEnv("fec-encoder")
	env.Clock = stagetest.NewFakeClock(time.Unix(0, 0))
	var cfg EncoderConfig
	stagetest.Decode(t, "fec-encoder", map[string]any{"overhead": 0.2, "group": int64(10)}, &cfg)
	st, _ := NewEncoder(&cfg, env)
	e := st.(*Encoder)
	out := stagetest.NewCollector()
	e.out, e.timer = out, env.Clock.NewTimer(time.Hour)
	a, b := core.NewStream("live/a"), core.NewStream("live/b")
	group := func(s *core.Stream, seq0 uint16) int {
		before := parityCount(out.Packets(), s)
		for i := range 10 {
			p := core.NewPacket(0)
			p.Data = append(p.Data, source(seq0, i, 100)...)
			p.Stream = s
			e.handle(p)
		}
		return parityCount(out.Packets(), s) - before
	}
	e.handle(core.NewEvent(core.EventStart, a))
	e.handle(core.NewEvent(core.EventStart, b))
	steps := []struct {
		do   func()
		a, b int
	}{
		{func() {}, 2, 2},
		{func() { e.SetOverhead(a, 0.5) }, 5, 2},
		{func() { e.SetOverhead(b, 0) }, 5, 0},
		{func() { _ = e.Reconfigure(&EncoderConfig{Overhead: 0.1}) }, 5, 0},
		{func() { e.SetOverhead(b, -1) }, 5, 1},
		{func() { e.SetOverhead(a, 7) }, 10, 1}, // clamped to 1
	}
	for i, s := range steps {
		s.do()
		if n := group(a, uint16(i*10)); n != s.a {
			t.Errorf("step %d: stream a got %d parity, want %d", i, n, s.a)
		}
		if n := group(b, uint16(i*10)); n != s.b {
			t.Errorf("step %d: stream b got %d parity, want %d", i, n, s.b)
		}
	}
}

// TestOverheadOffMidGroup: the overhead turned to 0 while a group is open
// sends no parity for it, at its end or later.
func TestOverheadOffMidGroup(t *testing.T) {
	src := [][]byte{source(0, 0, 100), source(0, 1, 100), source(0, 2, 100)}
	env := core.TestEnv("fec-encoder")
	env.Clock = stagetest.NewFakeClock(time.Unix(0, 0))
	var cfg EncoderConfig
	stagetest.Decode(t, "fec-encoder", nil, &cfg)
	st, _ := NewEncoder(&cfg, env)
	e := st.(*Encoder)
	out := stagetest.NewCollector()
	e.out, e.timer = out, env.Clock.NewTimer(time.Hour)
	s := core.NewStream("live/off")
	e.handle(core.NewEvent(core.EventStart, s))
	for i, b := range src {
		if i == 2 {
			e.SetOverhead(s, 0)
		}
		p := core.NewPacket(len(b))
		copy(p.Data, b)
		p.Stream = s
		e.handle(p)
	}
	e.handle(core.NewEvent(core.EventEnd, s))
	if n := parityCount(out.Packets(), s); n != 0 || len(out.Data()) != 3 {
		t.Fatalf("%d parity, %d packets out; want the 3 sources alone", n, len(out.Data()))
	}
}
