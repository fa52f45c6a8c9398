package flvreassembler

import (
	"bytes"
	"testing"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/media/rtpflv"
	"github.com/mediapipe/mediapipe/core/stagetest"
)

// fragments returns tag's RTP packets from f.
func fragments(f *rtpflv.Fragmenter, tag []byte) [][]byte {
	h, _ := flv.ParseHeader(tag)
	var pkts [][]byte
	for off := 0; off < len(tag); {
		b := make([]byte, f.Size(len(tag), off))
		_, off = f.Put(b, tag, off, h.Timestamp)
		pkts = append(pkts, b)
	}
	return pkts
}

// testTags: tag 0 one packet, tag 1 three packets, tag 2 one packet, tag 3
// the 1 MB keyframe (889 packets), tag 4 one packet.
func testTags() [][]byte {
	return [][]byte{
		flv.AppendTag(nil, flv.TypeScript, 0, stagetest.Pattern(100, 1)),
		flv.AppendTag(nil, flv.TypeVideo, 40, stagetest.Pattern(3000, 2)),
		flv.AppendTag(nil, flv.TypeAudio, 41, nil),
		flv.AppendTag(nil, flv.TypeVideo, 0x01000000, stagetest.Pattern(1<<20, 3)),
		flv.AppendTag(nil, flv.TypeAudio, 0x01000001, stagetest.Pattern(1180-flv.HeaderSize, 4)),
	}
}

func drops(env *core.Env) map[string]float64 {
	m := map[string]float64{}
	for r := rtpflv.Reason(0); r < rtpflv.NumReasons; r++ {
		if v := env.Metrics.Drop(r.String()).Value(); v > 0 {
			m[r.String()] = v
		}
	}
	if v := env.Metrics.Drop("unknown_stream").Value(); v > 0 {
		m["unknown_stream"] = v
	}
	return m
}

func TestReassembles(t *testing.T) {
	cases := []struct {
		name  string
		lose  func(tag, frag, n int) bool
		want  []int
		drops map[string]float64
	}{
		{"no_loss", func(int, int, int) bool { return false }, []int{0, 1, 2, 3, 4}, map[string]float64{}},
		{"middle_fragment", func(tag, frag, _ int) bool { return tag == 1 && frag == 1 }, []int{0, 2, 3, 4},
			map[string]float64{"missing_fragment": 1, "orphan_fragment": 1}},
		{"last_fragment_of_keyframe", func(tag, frag, n int) bool { return tag == 3 && frag == n-1 }, []int{0, 1, 2, 4},
			map[string]float64{"missing_fragment": 1}},
		{"first_fragment", func(tag, frag, _ int) bool { return tag == 1 && frag == 0 }, []int{0, 2, 3, 4},
			map[string]float64{"orphan_fragment": 1}},
		{"whole_tag", func(tag, _, _ int) bool { return tag == 2 }, []int{0, 1, 3, 4}, map[string]float64{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tags := testTags()
			h := stagetest.StartNamed(t, "flv-reassembler", nil)
			env := h.Env
			s := h.StartStream("live/movie")
			f := &rtpflv.Fragmenter{SSRC: 77, Seq: 65000, PayloadType: 100, MaxPayload: 1180}
			for ti, tg := range tags {
				pkts := fragments(f, tg)
				for k, b := range pkts {
					if !c.lose(ti, k, len(pkts)) {
						h.SendData(s, 0, 0, b)
					}
				}
			}
			h.EndStream(s)
			if err := h.Close(); err != nil {
				t.Fatal(err)
			}
			all := h.Out.Packets()
			if all[0].Event != core.EventStart || all[len(all)-1].Event != core.EventEnd {
				t.Fatal("start/end not passed around the data")
			}
			got := h.Out.Data()
			if len(got) != len(c.want) {
				t.Fatalf("%d tags, want %d", len(got), len(c.want))
			}
			for i, ti := range c.want {
				hdr, _ := flv.ParseHeader(tags[ti])
				if !bytes.Equal(got[i].Data, tags[ti]) || got[i].Type != hdr.Type || got[i].Timestamp != hdr.Timestamp || got[i].Stream != s {
					t.Fatalf("output %d is not tag %d (type %d ts %d, %d bytes)", i, ti, got[i].Type, got[i].Timestamp, len(got[i].Data))
				}
			}
			if d := drops(env); len(d) != len(c.drops) || !equal(d, c.drops) {
				t.Errorf("drops %v, want %v", d, c.drops)
			}
		})
	}
}

func equal(a, b map[string]float64) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return len(a) == len(b)
}

func TestStreamsAndStateLifecycle(t *testing.T) {
	h := stagetest.StartNamed(t, "flv-reassembler", map[string]any{"max_tag_size": int64(2000)})
	env := h.Env
	a := h.StartStream("live/a")
	b := h.StartStream("live/b")
	fa := &rtpflv.Fragmenter{SSRC: 1, Seq: 1, PayloadType: 100, MaxPayload: 1180}
	fb := &rtpflv.Fragmenter{SSRC: 1, Seq: 9000, PayloadType: 100, MaxPayload: 1180} // same SSRC, other stream: independent
	ta := flv.AppendTag(nil, flv.TypeVideo, 5, stagetest.Pattern(1500, 1))
	tb := flv.AppendTag(nil, flv.TypeAudio, 6, stagetest.Pattern(1500, 2))
	pa, pb := fragments(fa, ta), fragments(fb, tb)
	// interleaved fragments of two streams
	h.SendData(a, 0, 0, pa[0])
	h.SendData(b, 0, 0, pb[0])
	h.SendData(a, 0, 0, pa[1])
	h.SendData(b, 0, 0, pb[1])
	// an oversize tag on a, then a new SSRC on b cutting a tag short
	for _, p := range fragments(fa, flv.AppendTag(nil, flv.TypeVideo, 7, stagetest.Pattern(2500, 3))) {
		h.SendData(a, 0, 0, p)
	}
	h.SendData(b, 0, 0, fragments(fb, tb)[0])
	fb2 := &rtpflv.Fragmenter{SSRC: 2, Seq: 4, PayloadType: 100, MaxPayload: 1180}
	for _, p := range fragments(fb2, tb) {
		h.SendData(b, 0, 0, p)
	}
	h.SendData(a, 0, 0, fragments(fa, ta)[0]) // cut off by the end
	h.EndStream(a)
	h.SendData(a, 0, 0, fragments(fa, ta)[0]) // after the end: unknown
	h.EndStream(b)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range h.Out.Data() {
		switch {
		case p.Stream == a && bytes.Equal(p.Data, ta):
			got = append(got, "a")
		case p.Stream == b && bytes.Equal(p.Data[flv.HeaderSize:], tb[flv.HeaderSize:]):
			// (the new SSRC's copy is retimed to follow the first: TestNewSSRCContinuesTimeline)
			got = append(got, "b")
		default:
			t.Fatalf("unexpected tag on %s", p.Stream.Name)
		}
	}
	if len(got) != 3 || got[0] != "a" || got[1] != "b" || got[2] != "b" {
		t.Fatalf("tags %v, want [a b b]", got)
	}
	want := map[string]float64{"oversize": 1, "missing_fragment": 2, "unknown_stream": 1}
	if d := drops(env); !equal(d, want) {
		t.Errorf("drops %v, want %v", d, want)
	}
	if v := core.GaugeValue(env.Metrics.Gauge("streams")); v != 0 {
		t.Errorf("streams gauge %v after both ended", v)
	}
}

func TestParams(t *testing.T) {
	def, _ := core.Default.Lookup("flv-reassembler")
	for _, c := range []struct {
		raw  map[string]any
		errs int
	}{
		{map[string]any{}, 0},
		{map[string]any{"max_tag_size": int64(1 << 20)}, 0},
		{map[string]any{"max_tag_size": int64(1 << 24)}, 1},
		{map[string]any{"max_tag_size": int64(0)}, 1},
	} {
		if errs := def.Check(c.raw); len(errs) != c.errs {
			t.Errorf("%v: %v", c.raw, errs)
		}
	}
}

// BenchmarkStage pushes pooled RTP packets through the stage's per-packet
// path. ns/op is per tag.
func BenchmarkStage(b *testing.B) {
	for _, c := range []struct {
		name string
		tag  []byte
	}{
		{"audio_300B", flv.AppendTag(nil, flv.TypeAudio, 1, stagetest.Pattern(300, 1))},
		{"video_5kB", flv.AppendTag(nil, flv.TypeVideo, 1, stagetest.Pattern(5000, 2))},
		{"keyframe_1MB", flv.AppendTag(nil, flv.TypeVideo, 1, stagetest.Pattern(1_000_000, 3))},
	} {
		b.Run(c.name, func(b *testing.B) {
			s := newStage(&Config{MaxTagSize: flv.MaxTagSize}, core.TestEnv("bench"))
			st := core.NewStream("live/bench")
			s.handle(core.NewEvent(core.EventStart, st), stagetest.Discard{})
			pkts := fragments(&rtpflv.Fragmenter{SSRC: 1, Seq: 1, PayloadType: 100, MaxPayload: 1180}, c.tag)
			seq := uint16(1)
			b.SetBytes(int64(len(c.tag)))
			b.ReportAllocs()
			for b.Loop() {
				for _, raw := range pkts {
					p := core.NewPacket(len(raw))
					copy(p.Data, raw)
					p.Data[2], p.Data[3] = byte(seq>>8), byte(seq)
					seq++
					p.Stream = st
					s.handle(p, stagetest.Discard{})
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(pkts)), "ns/packet")
		})
	}
}
