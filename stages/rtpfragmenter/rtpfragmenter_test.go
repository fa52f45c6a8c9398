package rtpfragmenter

import (
	"bytes"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/media/rtpflv"
	"github.com/mediapipe/mediapipe/core/media/rtpheader"
	"github.com/mediapipe/mediapipe/core/stagetest"
)

func sendTag(h *stagetest.Harness, s *core.Stream, tag []byte) {
	hdr, _ := flv.ParseHeader(tag)
	h.SendData(s, hdr.Type, hdr.Timestamp, tag)
}

func TestFragmentsTags(t *testing.T) {
	tags := [][]byte{
		flv.AppendTag(nil, flv.TypeScript, 0, nil),                                         // empty body
		flv.AppendTag(nil, flv.TypeAudio, 10, stagetest.Pattern(1180-flv.HeaderSize, 1)),   // exactly max_payload
		flv.AppendTag(nil, flv.TypeVideo, 20, stagetest.Pattern(1180-flv.HeaderSize+1, 2)), // one byte over
		flv.AppendTag(nil, flv.TypeVideo, 0x01000040, stagetest.Pattern(1<<20, 3)),         // 1 MB keyframe, extended ts
		flv.AppendTag(nil, flv.TypeAudio, 0x01000041, stagetest.Pattern(300, 4)),
	}
	wantPkts := []int{1, 1, 2, 889, 1}
	h := stagetest.StartNamed(t, "rtp-fragmenter", nil)
	s := h.StartStream("live/movie")
	for _, tg := range tags {
		sendTag(h, s, tg)
	}
	h.EndStream(s)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	all := h.Out.Packets()
	if all[0].Event != core.EventStart || all[len(all)-1].Event != core.EventEnd {
		t.Fatalf("events not passed in order: first %v last %v", all[0].Event, all[len(all)-1].Event)
	}
	data := h.Out.Data()
	total := 0
	for _, n := range wantPkts {
		total += n
	}
	if len(data) != total {
		t.Fatalf("%d packets, want %d", len(data), total)
	}
	var r rtpflv.Reassembler
	var ssrc uint32
	i := 0
	for ti, tg := range tags {
		hdr, _ := flv.ParseHeader(tg)
		for k := 0; k < wantPkts[ti]; k++ {
			p := data[i]
			rh, payload, err := rtpheader.Parse(p.Data)
			if err != nil {
				t.Fatalf("packet %d: %v", i, err)
			}
			if i == 0 {
				ssrc = rh.SSRC
			} else if rh.SSRC != ssrc {
				t.Fatalf("packet %d: SSRC changed within the stream", i)
			}
			if i > 0 {
				prev, _, _ := rtpheader.Parse(data[i-1].Data)
				if rh.Seq != prev.Seq+1 {
					t.Fatalf("packet %d: seq %d after %d", i, rh.Seq, prev.Seq)
				}
			}
			last := k == wantPkts[ti]-1
			if rh.PayloadType != 100 || rh.Marker != last || rh.Timestamp != hdr.Timestamp || p.Timestamp != hdr.Timestamp || p.Stream != s {
				t.Fatalf("packet %d: header %+v, packet ts %d", i, rh, p.Timestamp)
			}
			if !last && len(payload) != 1180 {
				t.Fatalf("packet %d: %d payload bytes", i, len(payload))
			}
			got := r.Push(p.Data)
			if last && !bytes.Equal(got, tg) {
				t.Fatalf("tag %d does not come back byte for byte", ti)
			}
			i++
		}
	}
}

func TestStreamsHaveOwnSSRCAndSequence(t *testing.T) {
	h := stagetest.StartNamed(t, "rtp-fragmenter", map[string]any{"max_payload": int64(200), "payload_type": int64(127)})
	env := h.Env
	a := h.StartStream("live/a")
	b := h.StartStream("live/b")
	for i := 0; i < 10; i++ {
		sendTag(h, a, flv.AppendTag(nil, flv.TypeVideo, uint32(i), stagetest.Pattern(500, byte(i))))
		sendTag(h, b, flv.AppendTag(nil, flv.TypeAudio, uint32(i), stagetest.Pattern(50, byte(i))))
	}
	h.SendData(a, flv.TypeVideo, 0, []byte{9, 0, 0, 5}) // short: not a tag
	h.SendData(core.NewStream("live/never-started"), flv.TypeVideo, 0, flv.AppendTag(nil, 9, 0, nil))
	h.EndStream(a)
	h.EndStream(b)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	next := map[*core.Stream]uint16{}
	ssrc := map[*core.Stream]uint32{}
	for _, p := range h.Out.Data() {
		rh, payload, err := rtpheader.Parse(p.Data)
		if err != nil || rh.PayloadType != 127 || len(payload) > 200 {
			t.Fatalf("bad packet %+v %v", rh, err)
		}
		if old, ok := ssrc[p.Stream]; ok {
			if old != rh.SSRC || next[p.Stream] != rh.Seq {
				t.Fatalf("%s: ssrc %x seq %d, want %x %d", p.Stream.Name, rh.SSRC, rh.Seq, old, next[p.Stream])
			}
		}
		ssrc[p.Stream], next[p.Stream] = rh.SSRC, rh.Seq+1
	}
	if len(ssrc) != 2 || ssrc[a] == ssrc[b] {
		t.Fatalf("SSRCs %v", ssrc)
	}
	if v := env.Metrics.Drop("bad_tag").Value(); v != 1 {
		t.Errorf("bad_tag drops %v", v)
	}
	if v := env.Metrics.Drop("unknown_stream").Value(); v != 1 {
		t.Errorf("unknown_stream drops %v", v)
	}
	if st := h.Out.Packets(); st[len(st)-1].Event != core.EventEnd {
		t.Errorf("end not last")
	}
}

func TestStreamRestartGetsNewState(t *testing.T) {
	h := stagetest.StartNamed(t, "rtp-fragmenter", nil)
	s := h.StartStream("live/x")
	sendTag(h, s, flv.AppendTag(nil, 9, 0, nil))
	h.EndStream(s)
	s2 := h.StartStream("live/x")
	sendTag(h, s2, flv.AppendTag(nil, 9, 0, nil))
	h.EndStream(s2)
	d := h.Out.WaitData(2, 5*time.Second)
	if len(d) != 2 {
		t.Fatalf("%d packets", len(d))
	}
	a, _, _ := rtpheader.Parse(d[0].Data)
	b, _, _ := rtpheader.Parse(d[1].Data)
	if a.SSRC == b.SSRC {
		t.Errorf("a restarted stream kept its SSRC %x", a.SSRC)
	}
}

func TestParams(t *testing.T) {
	def, _ := core.Default.Lookup("rtp-fragmenter")
	cases := []struct {
		raw  map[string]any
		errs int
	}{
		{map[string]any{}, 0},
		{map[string]any{"max_payload": int64(200), "payload_type": int64(96)}, 0},
		{map[string]any{"max_payload": int64(199)}, 1},
		{map[string]any{"max_payload": int64(65001)}, 1},
		{map[string]any{"payload_type": int64(95)}, 1},
		{map[string]any{"payload_type": int64(128), "mtu": int64(1)}, 2},
	}
	for _, c := range cases {
		if errs := def.Check(c.raw); len(errs) != c.errs {
			t.Errorf("%v: %v", c.raw, errs)
		}
	}
}

// BenchmarkStage runs tags through the stage's own per-packet path (lookup,
// check, in-place or pooled fragments, emit). ns/op is per tag.
func BenchmarkStage(b *testing.B) {
	for _, c := range []struct {
		name string
		tag  []byte
	}{
		{"audio_300B", flv.AppendTag(nil, flv.TypeAudio, 1, stagetest.Pattern(300, 1))},
		{"video_5kB", flv.AppendTag(nil, flv.TypeVideo, 1, stagetest.Pattern(5000, 2))},
		{"keyframe_1MB", flv.AppendTag(nil, flv.TypeVideo, 1, stagetest.Pattern(1_000_000, 3))}, // input fits the largest packet pool class
	} {
		b.Run(c.name, func(b *testing.B) {
			s := newStage(&Config{MaxPayload: 1180, PayloadType: 100}, core.TestEnv("bench"))
			st := core.NewStream("live/bench")
			s.handle(core.NewEvent(core.EventStart, st), stagetest.Discard{})
			b.SetBytes(int64(len(c.tag)))
			b.ReportAllocs()
			for b.Loop() {
				p := core.NewPacket(len(c.tag))
				copy(p.Data, c.tag)
				p.Stream = st
				s.handle(p, stagetest.Discard{})
			}
		})
	}
}
