package rtmpsource

import (
	"bytes"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
)

type keepOutput struct{ got []*core.Packet }

func (o *keepOutput) Emit(p *core.Packet) { o.got = append(o.got, p) }

// A returning publisher whose first video is not a keyframe: its frames up
// to the first keyframe are dropped and counted, sequence headers and audio
// pass, and every timestamp goes on one frame interval after the old
// publisher's last (the new one's timeline shifted as a whole).
func TestResumedPublisherStartsAtKeyframe(t *testing.T) {
	env := core.TestEnv("rtmp-source")
	out := &keepOutput{}
	s := &Stage{out: out, nonKey: env.Metrics.Drop("reconnect_before_keyframe")}
	st := core.NewStream("live/k")
	tl := &timeline{stream: st, last: 9000, lastVideo: 9000, gap: 33}
	h := &handler{s: s, stream: st, tl: tl, resumed: true, waitKey: true, floor: tl.last}
	send := func(typ uint8, ts uint32, body []byte) {
		var err error
		if typ == flv.TypeVideo {
			err = h.OnVideo(ts, bytes.NewReader(body))
		} else {
			err = h.OnAudio(ts, bytes.NewReader(body))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	seqHeader := []byte{0x17, 0, 0, 0, 0, 1, 2, 3}
	inter := []byte{0x27, 1, 0, 0, 0, 9, 9}
	key := []byte{0x17, 1, 0, 0, 0, 8, 8}
	aac := []byte{0xaf, 1, 5, 5}
	send(flv.TypeVideo, 500, seqHeader) // its timeline starts at 500
	send(flv.TypeVideo, 500, inter)     // joined mid-GOP: dropped
	send(flv.TypeAudio, 510, aac)
	send(flv.TypeVideo, 533, inter) // dropped
	send(flv.TypeVideo, 566, key)
	send(flv.TypeVideo, 599, inter)
	type tag struct {
		typ uint8
		ts  uint32
	}
	want := []tag{{flv.TypeVideo, 9033}, {flv.TypeAudio, 9043}, {flv.TypeVideo, 9099}, {flv.TypeVideo, 9132}}
	if len(out.got) != len(want) {
		t.Fatalf("%d tags out, want %d", len(out.got), len(want))
	}
	for i, w := range want {
		if p := out.got[i]; p.Type != w.typ || p.Timestamp != w.ts {
			t.Errorf("tag %d: type %d at %d, want type %d at %d", i, p.Type, p.Timestamp, w.typ, w.ts)
		}
		out.got[i].Release()
	}
	if n := s.nonKey.Value(); n != 2 {
		t.Fatalf("reconnect_before_keyframe %v, want 2", n)
	}
}

// reconnect_grace changes on a reload, in place, for publishers leaving
// from then on.
func TestReconfigureReconnectGrace(t *testing.T) {
	cfg := Config{Listen: "127.0.0.1:0", IdleTimeout: 10 * time.Second, MaxMessageSize: 1 << 20}
	st, err := New(&cfg, core.TestEnv("rtmp-source"))
	if err != nil {
		t.Fatal(err)
	}
	s := st.(*Stage)
	next := cfg
	next.ReconnectGrace = 2 * time.Second
	if err := s.Reconfigure(&next); err != nil {
		t.Fatal(err)
	}
	if g := time.Duration(s.grace.Load()); g != 2*time.Second {
		t.Fatalf("grace %v after the reload, want 2s", g)
	}
}
