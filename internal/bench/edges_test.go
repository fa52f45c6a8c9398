package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/control"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// TestEgressOf checks the egress split from known counts: media and parity
// as one group member read them, repair at the mean media packet's size,
// and the ratio over all three.
func TestEgressOf(t *testing.T) {
	c := meterCounts{media: kindCount{bytes: 1_000_000, packets: 1000}, parity: kindCount{bytes: 200_000, packets: 150},
		rtcp: kindCount{bytes: 520, packets: 10}}
	e := egressOf(c, 80) // 80 repaired packets summed over the edges
	if e.MediaBytes != 1_000_000 || e.ParityBytes != 200_000 || e.RepairBytes != 80_000 {
		t.Errorf("media %d parity %d repair %d, want 1000000 200000 80000", e.MediaBytes, e.ParityBytes, e.RepairBytes)
	}
	if e.RatioToMedia != 1.28 {
		t.Errorf("ratio %v, want (1e6+2e5+8e4)/1e6 = 1.28", e.RatioToMedia)
	}
	if e.RTCPBytes != 520 || e.ParityPackets != 150 || e.RepairPackets != 80 {
		t.Errorf("rtcp %d parity packets %d repair packets %d", e.RTCPBytes, e.ParityPackets, e.RepairPackets)
	}
	if z := egressOf(meterCounts{}, 5); z.RatioToMedia != 0 || z.RepairBytes != 0 {
		t.Errorf("no media: %+v, want no ratio and no repair bytes", z)
	}
}

// TestGroupMeterClassifies checks the meter sorts datagrams by payload type
// as udp-sink sends them: media RTP, parity RTP (marker bit or not), RTCP.
func TestGroupMeterClassifies(t *testing.T) {
	m, err := newMeter(parityPT)
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	c, err := net.Dial("udp", m.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rtp := func(pt byte, n int) []byte { b := make([]byte, n); b[0], b[1] = 0x80, pt; return b }
	for _, d := range [][]byte{rtp(mediaPT, 1000), rtp(mediaPT|0x80, 500), rtp(parityPT, 1100), rtp(200, 52), {1, 2, 3}} {
		if _, err := c.Write(d); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for m.counts().other.packets == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	got := m.counts()
	want := meterCounts{media: kindCount{1500, 2}, parity: kindCount{1100, 1}, rtcp: kindCount{52, 1}, other: kindCount{3, 1}}
	if got != want {
		t.Errorf("counts %+v, want %+v", got, want)
	}
}

// TestEdgeContentCheck feeds a viewer an FLV response in which one
// published tag is corrupt (a byte flipped), one is missing, and one
// more arrives past the cut: the edge's result counts 1 corrupt and 2
// missing (the corrupt one was not delivered intact) of 5 due.
func TestEdgeContentCheck(t *testing.T) {
	l := newLedger()
	var bodies [][]byte
	for i := range 6 {
		b := bytes.Repeat([]byte{0xAF, 0x01, byte(i)}, 50+i) // AAC raw frames
		bodies = append(bodies, b)
		l.add(flv.TypeAudio, uint32(i*23), int64(i), b)
	}
	resp := flv.FileHeader(true, false)
	for i, b := range bodies {
		switch i {
		case 1:
			b = bytes.Clone(b)
			b[len(b)-1] ^= 0xFF // corrupt
		case 2:
			continue // missing
		}
		n := len(resp)
		resp = flv.AppendTag(resp, flv.TypeAudio, uint32(i*23), b)
		resp = flv.AppendPreviousTagSize(resp, len(resp)-n)
	}
	client, server := net.Pipe()
	go func() { _, _ = server.Write(resp); server.Close() }()
	v := &viewer{ledger: l, idle: 5 * time.Second, lat: &histogram{}}
	v.first.Store(-1)
	v.last.Store(-1)
	v.cut.Store(4 + 1) // tags 0…4 are due; 5 came later
	_ = v.read(client, client, time.Unix(0, 0))
	r := edgeResultOf(&edgeSite{name: "edge01", viewers: []*viewer{v}}, metricsView{}, func(*viewer) (int64, int64) { return -1, 4 })
	if r.Published != 5 || r.Delivered != 3 || r.Missing != 2 || r.Corrupt != 1 {
		t.Errorf("published %d delivered %d missing %d corrupt %d, want 5 3 2 1", r.Published, r.Delivered, r.Missing, r.Corrupt)
	}
	rep := &EdgesReport{Edges: []EdgeResult{r}}
	rep.judge()
	if rep.Intact || !strings.Contains(rep.Verdict, "2 tags missing and 1 corrupt") {
		t.Errorf("intact %v verdict %q", rep.Intact, rep.Verdict)
	}
	// The same viewer with every tag: intact.
	ok := EdgeResult{Edge: "edge02", Viewers: 1, Joined: 1, Published: 5, Delivered: 5}
	rep = &EdgesReport{Edges: []EdgeResult{ok}}
	rep.judge()
	if !rep.Intact {
		t.Errorf("verdict %q for an edge with every tag", rep.Verdict)
	}
}

func TestViewerDue(t *testing.T) {
	for _, c := range []struct {
		first, key, cut int64
		got, want       uint64
	}{
		{first: 10, key: -1, cut: 19, got: 10, want: 10},
		{first: 10, key: -1, cut: 19, got: 7, want: 10},
		{first: 10, key: 12, cut: 19, got: 10, want: 10}, // the GOP cache started it before the join
		{first: 12, key: 10, cut: 19, got: 8, want: 10},  // the first keyframe after the join lost
		{first: -1, key: 10, cut: 19, got: 0, want: 10},  // joined, got nothing
		{first: -1, key: -1, cut: 19, got: 0, want: 20},  // nothing at all: every tag missing
		{first: 25, key: -1, cut: 19, got: 0, want: 0},   // joined after the cut
		{first: 25, key: 24, cut: 19, got: 0, want: 0},
		{first: 0, key: -1, cut: -1, got: 0, want: 0}, // nothing published
	} {
		if d := viewerDue(c.first, c.key, c.cut, c.got); d != c.want {
			t.Errorf("viewerDue(%d, %d, %d, %d) = %d, want %d", c.first, c.key, c.cut, c.got, d, c.want)
		}
	}
}

// TestEdgeLostFirstKeyframe: a viewer joins, the first keyframe published
// after that is lost at its edge, and the sink starts it at the next one:
// the tags from the lost keyframe on count as missing, not only those
// after the viewer's first matched tag.
func TestEdgeLostFirstKeyframe(t *testing.T) {
	l := newLedger()
	var bodies [][]byte
	for i := range 9 {
		frame := byte(0x27) // inter frame, AVC
		if i%3 == 0 {
			frame = 0x17 // keyframe
		}
		b := append([]byte{frame, 0x01, 0, 0, 0}, bytes.Repeat([]byte{byte(i)}, 40)...)
		bodies = append(bodies, b)
		l.add(flv.TypeVideo, uint32(i*40), int64(i*100), b) // written at i × 100 ns
	}
	if k := l.keyAfter(250); k != 3 {
		t.Fatalf("first keyframe after 250 ns: %d, want 3", k)
	}
	if k := l.keyAfter(801); k != -1 {
		t.Fatalf("keyframe after the last tag: %d, want none", k)
	}
	resp := flv.FileHeader(false, true)
	for i := 6; i < 9; i++ { // 3…5 lost with their keyframe: the sink waited for 6
		n := len(resp)
		resp = flv.AppendTag(resp, flv.TypeVideo, uint32(i*40), bodies[i])
		resp = flv.AppendPreviousTagSize(resp, len(resp)-n)
	}
	client, server := net.Pipe()
	go func() { _, _ = server.Write(resp); server.Close() }()
	v := &viewer{ledger: l, idle: 5 * time.Second, lat: &histogram{}}
	v.first.Store(-1)
	v.last.Store(-1)
	v.cut.Store(8 + 1)
	v.connected.Store(true)
	v.joinedAt.Store(250) // after tag 2, before keyframe 3
	_ = v.read(client, client, time.Unix(0, 0))
	r := edgeResultOf(&edgeSite{name: "edge01", viewers: []*viewer{v}}, metricsView{}, func(v *viewer) (int64, int64) {
		return l.keyAfter(v.joinedAt.Load()), 8
	})
	if r.Published != 6 || r.Delivered != 3 || r.Missing != 3 {
		t.Errorf("published %d delivered %d missing %d, want 6 3 3 (from keyframe 3 on)", r.Published, r.Delivered, r.Missing)
	}
}

// TestEdgesTOML checks the file's shape: with FEC the edges pass parity
// through udp-source into fec-decoder after netsim, each netsim with a
// seed of its own; only the encoder params the flags set are written.
func TestEdgesTOML(t *testing.T) {
	edges := []*edgeSite{{name: "edge01", udp: "127.0.0.1:1", http: "127.0.0.1:2"}, {name: "edge02", udp: "127.0.0.1:3", http: "127.0.0.1:4"}}
	cfg := Config{FEC: true, Overhead: -1, Loss: 0.05, Burst: 1, Seed: 7, ReorderLatency: edgesReorderLatency}
	s := edgesTOML(cfg, "127.0.0.1:5", "127.0.0.1:6", "127.0.0.1:7", edges)
	for _, want := range []string{`use = "fec-encoder"`, `"127.0.0.1:1", "127.0.0.1:3", "127.0.0.1:7"`, "fec_payload_type = 101", "seed = 7", "seed = 8", `latency = "150ms"`} {
		if !strings.Contains(s, want) {
			t.Errorf("TOML lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "overhead =") || strings.Contains(s, "policy =") {
		t.Errorf("TOML sets encoder params no flag asked for:\n%s", s)
	}
	if i, j := strings.Index(s, `use = "netsim"`), strings.Index(s, `use = "fec-decoder"`); i < 0 || j < i {
		t.Errorf("netsim must come before fec-decoder:\n%s", s)
	}
	cfg.Policy, cfg.Overhead = "static", 0.3
	if s := encoderTOML(cfg); !strings.Contains(s, `policy = "static"`) || !strings.Contains(s, "overhead = 0.3") {
		t.Errorf("encoder table %q", s)
	}
	cfg.FEC = false
	if s := edgesTOML(cfg, "127.0.0.1:5", "127.0.0.1:6", "127.0.0.1:7", edges); strings.Contains(s, "fec-") || strings.Contains(s, "fec_payload_type") {
		t.Errorf("--fec=false still has FEC:\n%s", s)
	}
}

// TestBenchEdges runs 3 edges at 5 % loss each, repair alone and then with
// a fixed 0.2 overhead: every tag intact at every edge, repair > 0 without
// FEC, parity > 0 with it, each edge's FEC recovering, and the egress
// fields consistent with each other and the stages' counters.
func TestBenchEdges(t *testing.T) {
	if testing.Short() {
		t.Skip("two 4 s runs of 3 edges")
	}
	base := Config{Edges: 3, Streams: 1, Viewers: 1, Duration: 4 * time.Second, Synthetic: true, Loss: 0.05, Burst: 1, Seed: 3,
		ReorderLatency: edgesReorderLatency, Overhead: -1}
	for _, c := range []struct {
		name string
		fec  bool
		over float64
	}{{"repair", false, -1}, {"fec", true, 0.2}} {
		t.Run(c.name, func(t *testing.T) {
			cfg := base
			cfg.FEC, cfg.Overhead = c.fec, c.over
			rep, err := RunEdges(t.Context(), cfg, testWriter{t})
			if err != nil {
				t.Fatal(err)
			}
			var js bytes.Buffer
			if err := writeJSONTo(&js, rep); err != nil {
				t.Fatal(err)
			}
			var back map[string]any
			if err := json.Unmarshal(js.Bytes(), &back); err != nil {
				t.Fatal(err)
			}
			eg, _ := back["cloud_egress"].(map[string]any)
			for _, k := range []string{"media_bytes", "parity_bytes", "repair_bytes", "ratio_to_media"} {
				if _, ok := eg[k]; !ok {
					t.Errorf("JSON cloud_egress lacks %s: %s", k, js.String())
				}
			}
			if !rep.Intact {
				t.Errorf("%s; errors %v; edges %+v", rep.Verdict, rep.Errors, rep.Edges)
			}
			e := rep.CloudEgress
			if e.MediaBytes == 0 {
				t.Fatal("no media counted")
			}
			// The meter is one group member: it got each media and parity
			// packet once, as udp-sink sent them to each destination; one
			// send to any of them may be refused as the relay shuts down.
			dests := float64(cfg.Edges + 1)
			if s := rep.Sent; math.Abs(float64(s.MeterPackets+s.MeterRTCP)*dests-s.SinkDatagrams) > dests {
				t.Errorf("meter read %d RTP + %d RTCP, udp-sink sent %v to %v destinations", s.MeterPackets, s.MeterRTCP, s.SinkDatagrams, dests)
			}
			var lost, fecRec, repaired, asked float64
			for _, x := range rep.Edges {
				lost += x.NetsimLost
				fecRec += x.FECRecovered
				repaired += x.Repaired
				asked += x.Asked
				if x.Published == 0 || x.Latency.N == 0 {
					t.Errorf("%s: published %d, %d latencies", x.Edge, x.Published, x.Latency.N)
				}
			}
			// The ratio from the other side's counters: parity as
			// fec-encoder counted it, repair between what the edges took
			// in (rtp-reorder's repaired) and what they asked for
			// (nacks_sent), each at its kind's mean packet size.
			if r := float64(e.RepairPackets); r < repaired || r > asked {
				t.Errorf("cloud repaired %v packets; the edges took in %v and asked for %v", r, repaired, asked)
			}
			media := float64(e.MediaBytes)
			mediaSize := media / float64(e.MediaPackets)
			parity := 0.0
			if e.ParityPackets > 0 {
				parity = rep.Sent.ParitySentCounter * float64(e.ParityBytes) / float64(e.ParityPackets)
			}
			lo, hi := (media+parity+repaired*mediaSize)/media, (media+parity+asked*mediaSize)/media
			t.Logf("ratio %v; from the stages' counters %.4f … %.4f", e.RatioToMedia, lo, hi)
			if slack := 2e-3 + 2*float64(e.ParityBytes)/float64(max(e.ParityPackets, 1))/media; e.RatioToMedia < lo-slack || e.RatioToMedia > hi+slack {
				t.Errorf("ratio %v; from the stages' counters %.4f … %.4f", e.RatioToMedia, lo, hi)
			}
			if lost == 0 {
				t.Error("netsim lost nothing at 5 %")
			}
			if c.fec {
				if e.ParityBytes == 0 || math.Abs(float64(e.ParityPackets)-rep.Sent.ParitySentCounter) > 1 {
					t.Errorf("parity %d bytes, %d packets; fec_parity_sent %v", e.ParityBytes, e.ParityPackets, rep.Sent.ParitySentCounter)
				}
				if fecRec == 0 {
					t.Error("no packet recovered by FEC")
				}
				if rep.StaticOverhead == nil && len(rep.Control) == 0 {
					t.Error("neither the controller's choices nor the static overhead reported")
				}
			} else if e.RepairBytes == 0 || e.ParityBytes != 0 {
				t.Errorf("repair alone: repair %d bytes, parity %d", e.RepairBytes, e.ParityBytes)
			}
		})
	}
}

// testWriter sends the bench's stderr to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestControlSample reads the controller's latest tick through the
// runtime's running pipelines, as the bench does each second, and falls
// back to nothing when no stage runs one.
func TestControlSample(t *testing.T) {
	reg := core.NewRegistry()
	tick := control.Tick{Policy: "mean-field", Decision: control.Decision{Reason: "loss up",
		Streams: map[uint32]control.StreamDecision{7: {Overhead: 0.1, PaceBytesPerSecond: 5e5}, 3: {Overhead: 0.25}}}}
	type noParams struct{}
	_ = reg.Add(core.Define(core.Spec{Name: "ctl-source", Out: core.KindRTP},
		func(*noParams, *core.Env) (core.Stage, error) { return &reportingSource{tick: tick}, nil }))
	_ = reg.Add(core.Define(core.Spec{Name: "plain-sink", In: core.KindRTP},
		func(*noParams, *core.Env) (core.Stage, error) { return idleStage{}, nil }))
	r := testrun.Start(t, "ctl.toml", "[[pipeline]]\nname = \"cloud\"\n[[pipeline.stage]]\nuse = \"ctl-source\"\n[[pipeline.stage]]\nuse = \"plain-sink\"\n", nil, testrun.Registry(reg))
	s, running, static := controlSample(r.RT, 2)
	if !running || static != nil {
		t.Fatalf("running %v static %v, want the reporter's tick", running, static)
	}
	want := []StreamChoice{{SSRC: 3, Overhead: 0.25}, {SSRC: 7, Overhead: 0.1, Pace: 5e5}}
	if s.Policy != "mean-field" || s.Reason != "loss up" || s.Second != 2 || !slices.Equal(s.Streams, want) {
		t.Errorf("sample %+v, want policy mean-field, reason, second 2 and streams %+v", s, want)
	}

	plain := core.NewRegistry()
	_ = plain.Add(core.Define(core.Spec{Name: "plain-source", Out: core.KindRTP},
		func(*noParams, *core.Env) (core.Stage, error) { return idleStage{}, nil }))
	_ = plain.Add(core.Define(core.Spec{Name: "plain-sink", In: core.KindRTP},
		func(*noParams, *core.Env) (core.Stage, error) { return idleStage{}, nil }))
	r = testrun.Start(t, "plain.toml", "[[pipeline]]\nname = \"cloud\"\n[[pipeline.stage]]\nuse = \"plain-source\"\n[[pipeline.stage]]\nuse = \"plain-sink\"\n", nil, testrun.Registry(plain))
	if _, running, static := controlSample(r.RT, 1); running || static != nil {
		t.Errorf("no controller, no fec-encoder: running %v static %v", running, static)
	}
}

// reportingSource is a source that runs a controller: it reports tick.
type reportingSource struct {
	idleStage
	tick control.Tick
}

func (s *reportingSource) LastTick() (control.Tick, bool) { return s.tick, true }

// idleStage is a stage that emits nothing and passes nothing on.
type idleStage struct{}

func (idleStage) Run(ctx context.Context, in <-chan *core.Packet, _ core.Output) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case p, ok := <-in:
			if !ok {
				return nil
			}
			p.Release()
		}
	}
}
