package quicretransmit

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/repairwire"
	"github.com/mediapipe/mediapipe/core/media/rtpheader"
	"github.com/mediapipe/mediapipe/core/stagetest"
	"github.com/mediapipe/mediapipe/internal/repair"
)

func rtpPacket(seq uint16, ssrc uint32, n int) []byte {
	b := make([]byte, rtpheader.Size+n)
	rtpheader.Put(b, rtpheader.Header{Marker: true, PayloadType: 100, Seq: seq, SSRC: ssrc})
	for i := 12; i < len(b); i++ {
		b[i] = byte(seq) ^ byte(i)
	}
	return b
}

// build makes the stage with a fake clock; s.env is what the harness must use.
func build(t testing.TB, raw map[string]any) *Stage {
	t.Helper()
	env := core.TestEnv("quic-retransmit")
	env.Clock = stagetest.NewFakeClock(time.Unix(1_700_000_000, 0))
	return stagetest.Build(t, "quic-retransmit", raw, env).(*Stage)
}

func TestParams(t *testing.T) {
	def, _ := core.Default.Lookup("quic-retransmit")
	for _, tc := range []struct {
		name string
		raw  map[string]any
		ok   bool
	}{
		{"minimal", map[string]any{"listen": "127.0.0.1:0"}, true},
		{"missing listen", map[string]any{}, false},
		{"cache too small", map[string]any{"listen": "127.0.0.1:0", "cache_packets": int64(8)}, false},
		{"cert without key", map[string]any{"listen": "127.0.0.1:0", "cert": "c.pem"}, false},
		{"all", map[string]any{"listen": "127.0.0.1:0", "cache_packets": int64(100), "token": "x", "max_rate": int64(1000), "max_peers": int64(2)}, true},
		{"max_peers zero", map[string]any{"listen": "127.0.0.1:0", "max_peers": int64(0)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if errs := def.Check(tc.raw); (len(errs) == 0) != tc.ok {
				t.Fatalf("errors %v", errs)
			}
		})
	}
	if p := def.Spec.Param("token"); p == nil || !p.Secret {
		t.Fatal("token must be secret")
	}
}

// pointerOut records the packets it is given, by identity.
type pointerOut struct {
	mu   sync.Mutex
	got  []*core.Packet
	data [][]byte
}

func (o *pointerOut) Emit(p *core.Packet) {
	o.mu.Lock()
	o.got = append(o.got, p)
	o.data = append(o.data, append([]byte(nil), p.Data...))
	o.mu.Unlock()
}

func TestPassesSamePacket(t *testing.T) {
	s := build(t, map[string]any{"listen": "127.0.0.1:0"})
	in := make(chan *core.Packet, 16)
	out := &pointerOut{}
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background(), in, out) }()
	stream := core.NewStream("live/a")
	var sent []*core.Packet
	in <- core.NewEvent(core.EventStart, stream)
	for i := 0; i < 5; i++ {
		p := core.NewPacket(0)
		p.Data = append(p.Data, rtpPacket(uint16(i), 7, 100)...)
		p.Stream = stream
		sent = append(sent, p)
		in <- p
	}
	junk := core.NewPacket(3) // not RTP: passed on, not cached
	junk.Stream = stream
	in <- junk
	in <- core.NewEvent(core.EventEnd, stream)
	close(in)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(out.got) != 8 {
		t.Fatalf("got %d packets", len(out.got))
	}
	for i, p := range sent {
		if out.got[i+1] != p || !bytes.Equal(out.data[i+1], rtpPacket(uint16(i), 7, 100)) {
			t.Fatalf("packet %d not passed on as is", i)
		}
	}
	if out.got[6] != junk || out.got[0].Event != core.EventStart || out.got[7].Event != core.EventEnd {
		t.Fatal("events or junk not passed on")
	}
	if core.CounterValue(s.notRTP) != 1 {
		t.Fatalf("not_rtp %v", core.CounterValue(s.notRTP))
	}
}

func TestRepairThroughStage(t *testing.T) {
	s := build(t, map[string]any{"listen": "127.0.0.1:0", "token": "tok", "cache_packets": int64(100)})
	h := stagetest.Start(t, s, s.env, false)
	clock := s.env.Clock.(*stagetest.FakeClock)
	stream := h.StartStream("live/a")
	stream.SetInit(&core.InitTags{Video: []byte("seqhdr")})
	const ssrc = 0x1234
	for i := 0; i < 250; i++ {
		seq := uint16(65500) + uint16(i)
		h.SendData(stream, 0, 0, rtpPacket(seq, ssrc, 1000))
	}
	h.Out.WaitData(250, 5*time.Second)

	type rep struct {
		seq  uint16
		data []byte
	}
	got := make(chan rep, 100)
	gone := make(chan uint16, 100)
	c, err := repair.Dial(repair.ClientConfig{
		Addr: s.Addr().String(), Token: "tok",
		OnRepair: func(_ uint32, seq uint16, p []byte) { got <- rep{seq, append([]byte(nil), p...)} },
		OnGone: func(_ uint32, seqs []uint16) {
			for _, q := range seqs {
				gone <- q
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	base := uint16(65500)
	last := base + 249
	if err := c.Nack(ssrc, []uint16{last, last - 99, last - 100}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		select {
		case r := <-got:
			if !bytes.Equal(r.data, rtpPacket(r.seq, ssrc, 1000)) {
				t.Fatalf("seq %d: bytes differ", r.seq)
			}
		case <-ctx.Done():
			t.Fatal("no repair")
		}
	}
	select {
	case q := <-gone:
		if q != last-100 {
			t.Fatalf("gone %d", q)
		}
	case <-ctx.Done():
		t.Fatal("no gone")
	}
	tags, err := c.Init(ctx, 0, "live/a")
	if err != nil || tags == nil || string(tags.Video) != "seqhdr" {
		t.Fatalf("init %+v %v", tags, err)
	}
	list, err := c.Streams(ctx)
	if err != nil || len(list) != 1 || list[0] != (repairwire.StreamInfo{SSRC: ssrc, Name: "live/a"}) {
		t.Fatalf("streams %v %v", list, err)
	}
	if v := core.CounterValue(h.Env.Metrics.Counter("repaired_sent")); v != 2 {
		t.Fatalf("repaired_sent %v", v)
	}

	// After the end the cache answers for RetainAfterEnd, then is freed.
	h.EndStream(stream)
	deadline := time.Now().Add(5 * time.Second)
	for len(h.Out.Packets()) < 252 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	clock.Advance(RetainAfterEnd - time.Second)
	if err := c.Nack(ssrc, []uint16{last}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-ctx.Done():
		t.Fatal("no repair shortly after end")
	}
	for s.Server().Stats().Streams != 0 && ctx.Err() == nil {
		clock.Advance(time.Second)
		time.Sleep(time.Millisecond)
	}
	if n := s.Server().Stats().Streams; n != 0 {
		t.Fatalf("%d streams still cached", n)
	}
	_ = c.Nack(ssrc, []uint16{last})
	select {
	case q := <-gone:
		if q != last {
			t.Fatalf("gone %d", q)
		}
	case <-ctx.Done():
		t.Fatal("no gone after free")
	}
}

func TestWrongTokenThroughStage(t *testing.T) {
	s := build(t, map[string]any{"listen": "127.0.0.1:0", "token": "tok"})
	h := stagetest.Start(t, s, s.env, false)
	stream := h.StartStream("live/a")
	h.SendData(stream, 0, 0, rtpPacket(1, 5, 10))
	h.Out.WaitData(1, 5*time.Second)
	c, err := repair.Dial(repair.ClientConfig{Addr: s.Addr().String(), Token: "bad", OnRepair: func(uint32, uint16, []byte) { t.Error("repair with a wrong token") }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for !errors.Is(c.LastError(), repair.ErrUnauthorized) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !errors.Is(c.LastError(), repair.ErrUnauthorized) {
		t.Fatalf("last error %v", c.LastError())
	}
	if v := core.CounterValue(h.Env.Metrics.Counter("requests")); v != 0 {
		t.Fatalf("requests %v", v)
	}
	if s.Server().Stats().Get(repair.EvAuthFailed) == 0 {
		t.Fatal("auth failure not counted")
	}
}

func TestAddressInUse(t *testing.T) {
	a := build(t, map[string]any{"listen": "127.0.0.1:0"})
	if err := a.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer a.Server().Close()
	b := build(t, map[string]any{"listen": a.Addr().String()})
	if err := b.Open(context.Background()); err == nil {
		t.Fatal("second bind succeeded")
	}
}

func BenchmarkPassThrough(b *testing.B) {
	s := build(b, map[string]any{"listen": "127.0.0.1:0"})
	stream := core.NewStream("live/a")
	s.streams[stream] = &streamState{}
	p := &core.Packet{Stream: stream, Data: rtpPacket(0, 9, 1180)}
	out := discard{}
	b.ReportAllocs()
	seq := uint16(0)
	for b.Loop() {
		p.Data[2], p.Data[3] = byte(seq>>8), byte(seq)
		s.handle(p, out)
		seq++
	}
}

type discard struct{}

func (discard) Emit(*core.Packet) {}

// cache_duration keeps each stream's packets of that long by the stage's
// clock, cache_packets still caps them, and 0 keeps cache_packets whatever
// their age.
func TestCacheDuration(t *testing.T) {
	for _, tc := range []struct {
		name     string
		raw      map[string]any
		keepsOld bool
		limit    int
	}{
		{"default 5s", map[string]any{}, false, 5000},
		{"2s, 100 packets", map[string]any{"cache_duration": "2s", "cache_packets": int64(100)}, false, 100},
		{"0: by count", map[string]any{"cache_duration": "0s"}, true, 5000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.raw["listen"] = "127.0.0.1:0"
			s := build(t, tc.raw)
			clock := s.env.Clock.(*stagetest.FakeClock)
			stream := core.NewStream("live/d")
			out := &pointerOut{}
			s.handle(core.NewEvent(core.EventStart, stream), out)
			// 50 packets a second for 10 s.
			for seq := range uint16(500) {
				s.handle(&core.Packet{Stream: stream, Data: rtpPacket(seq, 4, 1000)}, out)
				clock.Advance(20 * time.Millisecond)
			}
			ring := s.srv.Stream(4, stream)
			if ring.Limit() != tc.limit {
				t.Fatalf("limit %d, want %d", ring.Limit(), tc.limit)
			}
			if ring.Has(100) != tc.keepsOld || !ring.Has(499) {
				t.Fatalf("8 s old packet cached=%v, newest cached=%v", ring.Has(100), ring.Has(499))
			}
			if d := s.cfg.CacheDuration; d > 0 {
				want := min(int(d/(20*time.Millisecond))+1, tc.limit)
				if h := ring.Held(); h != want {
					t.Fatalf("held %d packets, want %d", h, want)
				}
			}
		})
	}
}
