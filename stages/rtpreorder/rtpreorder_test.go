package rtpreorder

import (
	"bytes"
	"context"
	"encoding/pem"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/rtpheader"
	"github.com/mediapipe/mediapipe/core/stagetest"
	"github.com/mediapipe/mediapipe/internal/repair"
	_ "github.com/mediapipe/mediapipe/stages/quicretransmit"
)

func rtpPacket(seq uint16, ssrc uint32, n int) []byte {
	b := make([]byte, rtpheader.Size+n)
	rtpheader.Put(b, rtpheader.Header{PayloadType: 100, Seq: seq, SSRC: ssrc})
	for i := 12; i < len(b); i++ {
		b[i] = byte(seq) ^ byte(i) ^ byte(seq>>8)
	}
	return b
}

func seqOf(b []byte) uint16 { return rtpheader.Seq(b) }

// start builds the stage with env (a fake clock unless real) and runs it.
func start(t *testing.T, raw map[string]any, real bool) (*Stage, *stagetest.Harness, *stagetest.FakeClock) {
	t.Helper()
	env := core.TestEnv("rtp-reorder")
	clock := stagetest.NewFakeClock(time.Unix(1_700_000_000, 0))
	if !real {
		env.Clock = clock
	}
	st := stagetest.Build(t, "rtp-reorder", raw, env)
	h := stagetest.Start(t, st, env, false)
	return st.(*Stage), h, clock
}

// barrier sends a packet of a private stream and waits for it to come out:
// everything sent before it has then been handled.
func barrier(t *testing.T, h *stagetest.Harness) {
	t.Helper()
	s := core.NewStream("barrier")
	h.Send(core.NewEvent(core.EventStart, s))
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, p := range h.Out.Packets() {
			if p.Stream == s {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("barrier: stage stuck")
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// seqs returns the sequence numbers of the data packets of stream st.
func seqs(h *stagetest.Harness, st *core.Stream) []uint16 {
	var out []uint16
	for _, p := range h.Out.Data() {
		if p.Stream == st {
			out = append(out, seqOf(p.Data))
		}
	}
	return out
}

func equal(t *testing.T, got, want []uint16) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d packets %v, want %d %v", len(got), got, len(want), want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("packet %d: seq %d, want %d (got %v)", i, got[i], want[i], got)
		}
	}
}

func span(first uint16, n int) []uint16 {
	out := make([]uint16, n)
	for i := range out {
		out[i] = first + uint16(i)
	}
	return out
}

func TestReorderCases(t *testing.T) {
	for _, tc := range []struct {
		name     string
		in       []uint16
		advance  time.Duration // after sending, move the clock
		want     []uint16
		skipped  float64
		dup      float64
		lateDrop float64
	}{
		{name: "in order", in: span(100, 50), want: span(100, 50)},
		{name: "swap", in: []uint16{1, 3, 2, 4}, want: []uint16{1, 2, 3, 4}},
		{name: "reverse run", in: []uint16{10, 15, 14, 13, 12, 11, 16}, want: span(10, 7)},
		{name: "across wrap", in: []uint16{65533, 65535, 65534, 1, 0, 2}, want: []uint16{65533, 65534, 65535, 0, 1, 2}},
		{name: "duplicates", in: []uint16{5, 6, 6, 8, 8, 7, 5}, want: span(5, 4), dup: 3},
		{name: "gap waits", in: []uint16{1, 2, 4, 5}, want: []uint16{1, 2}},
		{name: "gap skipped after latency", in: []uint16{1, 2, 4, 5}, advance: 80 * time.Millisecond, want: []uint16{1, 2, 4, 5}, skipped: 1},
		{name: "gap across wrap skipped", in: []uint16{65534, 1, 2}, advance: time.Second, want: []uint16{65534, 1, 2}, skipped: 2},
		{name: "not yet at latency", in: []uint16{1, 3}, advance: 79 * time.Millisecond, want: []uint16{1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, h, clock := start(t, map[string]any{}, false)
			st := h.StartStream("live/a")
			for _, q := range tc.in {
				h.SendData(st, 0, 0, rtpPacket(q, 7, 20))
			}
			barrier(t, h)
			if tc.advance > 0 {
				clock.Advance(tc.advance)
				barrier(t, h)
			}
			equal(t, seqs(h, st), tc.want)
			if s.gapSkipped.Value() != tc.skipped || s.duplicate.Value() != tc.dup || s.late.Value() != tc.lateDrop {
				t.Fatalf("skipped %v dup %v late %v", s.gapSkipped.Value(), s.duplicate.Value(), s.late.Value())
			}
			for _, p := range h.Out.Data() {
				if !bytes.Equal(p.Data, rtpPacket(seqOf(p.Data), 7, 20)) {
					t.Fatalf("seq %d: bytes changed", seqOf(p.Data))
				}
			}
		})
	}
}

func TestLateAfterSkip(t *testing.T) {
	s, h, clock := start(t, map[string]any{"latency": "50ms"}, false)
	st := h.StartStream("live/a")
	for _, q := range []uint16{1, 3} {
		h.SendData(st, 0, 0, rtpPacket(q, 7, 20))
	}
	barrier(t, h)
	clock.Advance(50 * time.Millisecond)
	barrier(t, h)
	h.SendData(st, 0, 0, rtpPacket(2, 7, 20)) // too late now
	h.SendData(st, 0, 0, rtpPacket(3, 7, 20)) // already released
	barrier(t, h)
	equal(t, seqs(h, st), []uint16{1, 3})
	if s.late.Value() != 1 || s.duplicate.Value() != 1 || s.gapSkipped.Value() != 1 {
		t.Fatalf("late %v dup %v skipped %v", s.late.Value(), s.duplicate.Value(), s.gapSkipped.Value())
	}
}

func TestEndFlushesAndSSRCChange(t *testing.T) {
	s, h, _ := start(t, map[string]any{}, false)
	st := h.StartStream("live/a")
	for _, q := range []uint16{1, 2, 4} {
		h.SendData(st, 0, 0, rtpPacket(q, 7, 20))
	}
	// The publisher came back: new SSRC, new numbering. What was held goes
	// out first, then the new SSRC from its first packet.
	for _, q := range []uint16{900, 901} {
		h.SendData(st, 0, 0, rtpPacket(q, 8, 20))
	}
	h.SendData(st, 0, 0, rtpPacket(903, 8, 20))
	h.EndStream(st)
	barrier(t, h)
	equal(t, seqs(h, st), []uint16{1, 2, 4, 900, 901, 903})
	if s.gapSkipped.Value() != 2 {
		t.Fatalf("skipped %v", s.gapSkipped.Value())
	}
	ps := h.Out.Packets()
	if last := ps[len(ps)-2]; last.Event != core.EventEnd || last.Stream != st {
		t.Fatalf("end not after the flushed packets: %+v", last)
	}
	if len(s.streams) != 1 || len(s.bySSRC) != 0 { // only the barrier stream
		t.Fatalf("state left: %d streams, %d ssrcs", len(s.streams), len(s.bySSRC))
	}
}

func TestOverflow(t *testing.T) {
	s, h, _ := start(t, map[string]any{"max_packets": int64(16)}, false)
	st := h.StartStream("live/a")
	h.SendData(st, 0, 0, rtpPacket(0, 7, 20))
	for q := uint16(2); q < 40; q++ { // 1 is lost; the window holds 16
		h.SendData(st, 0, 0, rtpPacket(q, 7, 20))
	}
	barrier(t, h)
	got := seqs(h, st)
	if len(got) != 39 || got[0] != 0 || got[1] != 2 || s.overflow.Value() != 1 {
		t.Fatalf("got %v, overflow %v", got, s.overflow.Value())
	}
}

func TestStreamsIndependent(t *testing.T) {
	_, h, _ := start(t, map[string]any{}, false)
	a := h.StartStream("live/a")
	b := h.StartStream("live/b")
	h.SendData(a, 0, 0, rtpPacket(1, 1, 10))
	h.SendData(a, 0, 0, rtpPacket(3, 1, 10)) // a waits on 2
	for q := uint16(50); q < 60; q++ {
		h.SendData(b, 0, 0, rtpPacket(q, 2, 10))
	}
	barrier(t, h)
	equal(t, seqs(h, b), span(50, 10))
	equal(t, seqs(h, a), []uint16{1})
}

// cloud is a repair server on loopback.
func cloud(t *testing.T, token string, cache int) *repair.Server {
	t.Helper()
	srv, _ := cloudAt(t, "127.0.0.1:0", token, cache)
	return srv
}

// cloudAt starts a repair server on addr; stop ends it (idempotent).
func cloudAt(t *testing.T, addr, token string, cache int) (*repair.Server, func()) {
	t.Helper()
	srv, err := repair.NewServer(repair.ServerConfig{Addr: addr, Token: token, CachePackets: cache})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.Serve(ctx); close(done) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return srv, stop
}

func waitConnected(t *testing.T, s *Stage) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !s.Connected() {
		if time.Now().After(deadline) {
			t.Fatal("not connected to the repair server")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestGapRepairedFromServer(t *testing.T) {
	srv := cloud(t, "tok", 1000)
	cloudStream := core.NewStream("live/a")
	ring := srv.Stream(0x77, cloudStream)
	for q := uint16(65500); q != 100; q++ {
		ring.Insert(q, rtpPacket(q, 0x77, 1100))
	}
	s, h, _ := start(t, map[string]any{"retransmit": srv.Addr().String(), "token": "tok", "latency": "2s"}, true)
	waitConnected(t, s)
	st := h.StartStream("live/a")
	want := span(65500, 136) // 65500 … 99, across the wrap
	for _, q := range want {
		if q == 65535 || q == 0 || q == 7 || q == 8 || q == 50 {
			continue // lost on the way
		}
		h.SendData(st, 0, 0, rtpPacket(q, 0x77, 1100))
	}
	got := h.Out.WaitData(len(want)+0, 5*time.Second)
	var gotSeqs []uint16
	for _, p := range got {
		if p.Stream == st {
			gotSeqs = append(gotSeqs, seqOf(p.Data))
			if !bytes.Equal(p.Data, rtpPacket(seqOf(p.Data), 0x77, 1100)) {
				t.Fatalf("seq %d: bytes differ", seqOf(p.Data))
			}
		}
	}
	equal(t, gotSeqs, want)
	if core.CounterValue(s.repaired) != 5 || s.gapSkipped.Value() != 0 {
		t.Fatalf("repaired %v skipped %v", core.CounterValue(s.repaired), s.gapSkipped.Value())
	}
}

func TestGoneSkipsAtOnce(t *testing.T) {
	srv := cloud(t, "", 100)
	ring := srv.Stream(9, core.NewStream("live/a"))
	for q := uint16(200); q < 300; q++ {
		ring.Insert(q, rtpPacket(q, 9, 10))
	}
	s, h, _ := start(t, map[string]any{"retransmit": srv.Addr().String(), "latency": "10s"}, true)
	waitConnected(t, s)
	st := h.StartStream("live/a")
	// 5..9 were never cached: the cloud says gone, the gap is skipped at once.
	h.SendData(st, 0, 0, rtpPacket(4, 9, 10))
	h.SendData(st, 0, 0, rtpPacket(10, 9, 10))
	h.Out.WaitData(2, 5*time.Second)
	equal(t, seqs(h, st), []uint16{4, 10})
	if s.gapSkipped.Value() != 5 {
		t.Fatalf("skipped %v", s.gapSkipped.Value())
	}
}

func TestRandomLossFullyRepaired(t *testing.T) {
	const n = 5000
	srv := cloud(t, "", n)
	ring := srv.Stream(0xabcdef, core.NewStream("live/a"))
	first := uint16(63000) // crosses the wrap
	for i := 0; i < n; i++ {
		q := first + uint16(i)
		ring.Insert(q, rtpPacket(q, 0xabcdef, 1000))
	}
	s, h, _ := start(t, map[string]any{"retransmit": srv.Addr().String(), "latency": "3s"}, true)
	waitConnected(t, s)
	st := h.StartStream("live/a")
	rng := rand.New(rand.NewPCG(1, 2))
	lost := 0
	for i := 0; i < n; i++ {
		if i > 0 && i < n-1 && rng.IntN(10) == 0 { // 10 % loss (first and last kept)
			lost++
			continue
		}
		q := first + uint16(i)
		h.SendData(st, 0, 0, rtpPacket(q, 0xabcdef, 1000))
	}
	got := h.Out.WaitData(n, 20*time.Second)
	if len(got) != n {
		t.Fatalf("got %d of %d packets (lost %d, repaired %v, skipped %v)", len(got), n, lost, core.CounterValue(s.repaired), s.gapSkipped.Value())
	}
	for i, p := range got {
		q := first + uint16(i)
		if seqOf(p.Data) != q || !bytes.Equal(p.Data, rtpPacket(q, 0xabcdef, 1000)) {
			t.Fatalf("packet %d: seq %d, want %d", i, seqOf(p.Data), q)
		}
	}
	if core.CounterValue(s.repaired) != float64(lost) || s.gapSkipped.Value() != 0 {
		t.Fatalf("lost %d, repaired %v, skipped %v", lost, core.CounterValue(s.repaired), s.gapSkipped.Value())
	}
	t.Logf("lost %d, repaired %v, nacks sent %v", lost, core.CounterValue(s.repaired), core.CounterValue(s.nacksSent))
}

// TestInitFetchedOnLateJoin: a stream whose first packet here is not its
// start (a mid-stream frame) gets its init tags from the cloud.
func TestInitFetchedOnLateJoin(t *testing.T) {
	srv := cloud(t, "tok", 100)
	cs := core.NewStream("live/late")
	cs.SetInit(&core.InitTags{Metadata: []byte("meta"), Video: []byte("avc"), Audio: []byte("aac")})
	srv.Stream(5, cs)
	_, h, _ := start(t, map[string]any{"retransmit": srv.Addr().String(), "token": "tok"}, true)
	st := h.StartStream("live/late")
	h.SendData(st, 0, 0, rtpPacket(1000, 5, 20))
	deadline := time.Now().Add(5 * time.Second)
	for st.Init() == nil && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	tags := st.Init()
	if tags == nil || string(tags.Metadata) != "meta" || string(tags.Video) != "avc" || string(tags.Audio) != "aac" {
		t.Fatalf("init tags %+v", tags)
	}
}

func TestNoServerStillSkips(t *testing.T) {
	// The cloud is down: gaps wait out latency and are skipped; nothing blocks.
	s, h, clock := start(t, map[string]any{"retransmit": "127.0.0.1:9", "latency": "30ms"}, false)
	st := h.StartStream("live/a")
	for _, q := range []uint16{1, 3, 4} {
		h.SendData(st, 0, 0, rtpPacket(q, 7, 20))
	}
	barrier(t, h)
	clock.Advance(30 * time.Millisecond)
	barrier(t, h)
	equal(t, seqs(h, st), []uint16{1, 3, 4})
	if s.gapSkipped.Value() != 1 {
		t.Fatalf("skipped %v", s.gapSkipped.Value())
	}
	// Never asked: the NACK could not be sent.
	if n := core.CounterValue(s.repairUnavailable); n != 1 {
		t.Fatalf("repair_unavailable %v, want 1", n)
	}
}

type discard struct{}

func (discard) Emit(*core.Packet) {}

func BenchmarkReorderNoLoss(b *testing.B) {
	def, _ := core.Default.Lookup("rtp-reorder")
	st, err := def.Build(map[string]any{}, core.TestEnv("rtp-reorder"))
	if err != nil {
		b.Fatal(err)
	}
	s := st.(*Stage)
	stream := core.NewStream("live/a")
	s.newBuffer(stream)
	p := &core.Packet{Stream: stream, Data: rtpPacket(0, 9, 1180)}
	b.ReportAllocs()
	seq := uint16(0)
	for b.Loop() {
		p.Data[2], p.Data[3] = byte(seq>>8), byte(seq)
		s.handle(p, discard{})
		seq++
	}
}

// TestCloudEdgeStages runs quic-retransmit and rtp-reorder as stages: what
// leaves the cloud stage, less 10 % lost on the way, leaves the edge whole.
func TestCloudEdgeStages(t *testing.T) {
	cdef, ok := core.Default.Lookup("quic-retransmit")
	if !ok {
		t.Fatal("quic-retransmit not registered")
	}
	cenv := core.TestEnv("quic-retransmit")
	cst, err := cdef.Build(map[string]any{"listen": "127.0.0.1:0", "token": "t0k"}, cenv)
	if err != nil {
		t.Fatal(err)
	}
	ch := stagetest.Start(t, cst, cenv, false)
	addr := cst.(interface{ Addr() net.Addr }).Addr().String()

	const n = 3000
	cloudStream := ch.StartStream("live/chain")
	cloudStream.SetInit(&core.InitTags{Metadata: []byte("onMetaData"), Video: []byte("avcC")})
	first := uint16(64000)
	for i := 0; i < n; i++ {
		q := first + uint16(i)
		ch.SendData(cloudStream, 0, 0, rtpPacket(q, 0x5151, 1180))
	}
	sent := ch.Out.WaitData(n, 10*time.Second)
	if len(sent) != n {
		t.Fatalf("cloud passed %d of %d", len(sent), n)
	}

	s, eh, _ := start(t, map[string]any{"retransmit": addr, "token": "t0k", "latency": "3s"}, true)
	edgeStream := eh.StartStream("live/chain") // the edge's own Stream, as udp-source makes it
	waitConnected(t, s)
	rng := rand.New(rand.NewPCG(3, 4))
	for i, p := range sent {
		if i > 0 && i < n-1 && rng.IntN(10) == 0 {
			continue
		}
		eh.SendData(edgeStream, 0, 0, p.Data)
	}
	got := eh.Out.WaitData(n, 20*time.Second)
	if len(got) != n {
		t.Fatalf("edge released %d of %d", len(got), n)
	}
	for i := range got {
		if !bytes.Equal(got[i].Data, sent[i].Data) {
			t.Fatalf("packet %d differs", i)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for edgeStream.Init() == nil && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if tags := edgeStream.Init(); tags == nil || string(tags.Metadata) != "onMetaData" || string(tags.Video) != "avcC" {
		t.Fatalf("edge init tags %+v", tags)
	}
	sentRep, used := core.CounterValue(cenv.Metrics.Counter("repaired_sent")), core.CounterValue(s.repaired)
	if used == 0 || sentRep < used {
		t.Fatalf("cloud sent %v repairs, edge used %v", sentRep, used)
	}
	t.Logf("cloud sent %v repairs, edge used %v, %v duplicates, %v nacks", sentRep, used, s.duplicate.Value(), core.CounterValue(s.nacksSent))
}

// TestCloudRestart: the cloud goes away and comes back on the same address;
// the edge reconnects by itself and repairs from the new one.
func TestCloudRestart(t *testing.T) {
	srv1, stop1 := cloudAt(t, "127.0.0.1:0", "k", 100)
	addr := srv1.Addr().String()
	ring := srv1.Stream(3, core.NewStream("live/a"))
	for q := uint16(0); q < 10; q++ {
		ring.Insert(q, rtpPacket(q, 3, 50))
	}
	s, h, _ := start(t, map[string]any{"retransmit": addr, "token": "k", "latency": "3s"}, true)
	waitConnected(t, s)
	st := h.StartStream("live/a")
	for _, q := range []uint16{0, 1, 3} {
		h.SendData(st, 0, 0, rtpPacket(q, 3, 50))
	}
	h.Out.WaitData(4, 5*time.Second)
	stop1()
	deadline := time.Now().Add(5 * time.Second)
	for s.Connected() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if s.Connected() {
		t.Fatal("edge did not notice the cloud stopping")
	}
	srv2, _ := cloudAt(t, addr, "k", 100)
	ring2 := srv2.Stream(3, core.NewStream("live/a"))
	for q := uint16(0); q < 20; q++ {
		ring2.Insert(q, rtpPacket(q, 3, 50))
	}
	waitConnected(t, s)
	for _, q := range []uint16{4, 6, 7} {
		h.SendData(st, 0, 0, rtpPacket(q, 3, 50))
	}
	h.Out.WaitData(8, 5*time.Second)
	equal(t, seqs(h, st), span(0, 8))
	if s.gapSkipped.Value() != 0 {
		t.Fatalf("skipped %v", s.gapSkipped.Value())
	}
}

func TestParams(t *testing.T) {
	def, _ := core.Default.Lookup("rtp-reorder")
	for _, tc := range []struct {
		name string
		raw  map[string]any
		ok   bool
	}{
		{"none", map[string]any{}, true},
		{"all", map[string]any{"retransmit": "127.0.0.1:4242", "token": "x", "latency": "200ms", "max_packets": int64(1000)}, true},
		{"token without retransmit", map[string]any{"token": "x"}, false},
		{"latency not a duration", map[string]any{"latency": int64(80)}, false},
		{"latency zero", map[string]any{"latency": "0s"}, false},
		{"window too small", map[string]any{"max_packets": int64(4)}, false},
		{"window too large", map[string]any{"max_packets": int64(40000)}, false},
		{"missing CA file", map[string]any{"retransmit": "127.0.0.1:4242", "ca": "/nonexistent.pem"}, false},
		{"unknown key", map[string]any{"latencyy": "80ms"}, false},
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
	if p := def.Spec.Param("latency"); p == nil || p.Default != "80ms" {
		t.Fatal("latency default")
	}
}

// A relative ca starts at the pipeline file's directory, as cert and key do
// on quic-retransmit, not at wherever mediapipe was started.
func TestCARelativeToPipelineFile(t *testing.T) {
	dir := t.TempDir()
	cert, err := repair.SelfSigned("cloud")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	def, _ := core.Default.Lookup("rtp-reorder")
	raw := func(ca string) map[string]any { return map[string]any{"retransmit": "127.0.0.1:4242", "ca": ca} }
	if errs := def.CheckIn(raw("ca.pem"), dir); len(errs) > 0 {
		t.Fatalf("ca.pem beside the pipeline file refused: %v", errs)
	}
	if errs := def.CheckIn(raw("missing.pem"), dir); len(errs) == 0 {
		t.Fatal("a missing relative ca passed validation")
	}
	env := core.TestEnv("rtp-reorder")
	env.Dir = dir
	if _, err := def.Build(raw("ca.pem"), env); err != nil {
		t.Fatalf("build with ca.pem beside the pipeline file: %v", err)
	}
	env.Dir = t.TempDir()
	if _, err := def.Build(raw("ca.pem"), env); err == nil {
		t.Fatal("build found ca.pem outside the pipeline file's directory")
	}
}
