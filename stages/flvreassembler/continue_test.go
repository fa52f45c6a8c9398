package flvreassembler

import (
	"bytes"
	"testing"

	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/media/rtpflv"
	"github.com/mediapipe/mediapipe/core/stagetest"
)

// A stream continued by another cloud (a new SSRC on the same stream, its
// own timeline from 0): the new tags' timestamps go on one frame interval
// after the last one sent, in the tag headers too, the bodies untouched.
func TestNewSSRCContinuesTimeline(t *testing.T) {
	h := stagetest.StartNamed(t, "flv-reassembler", nil)
	s := h.StartStream("live/c")
	primary := &rtpflv.Fragmenter{SSRC: 1, Seq: 10, PayloadType: 100, MaxPayload: 1180}
	standby := &rtpflv.Fragmenter{SSRC: 2, Seq: 5000, PayloadType: 100, MaxPayload: 1180}
	var bodies [][]byte
	sendTag := func(f *rtpflv.Fragmenter, typ uint8, ts uint32, size int) {
		body := stagetest.Pattern(size, byte(len(bodies)))
		bodies = append(bodies, body)
		for _, b := range fragments(f, flv.AppendTag(nil, typ, ts, body)) {
			h.SendData(s, 0, 0, b)
		}
	}
	for i := range 10 { // 30 fps on the primary, up to 5000 ms
		sendTag(primary, flv.TypeVideo, 4700+uint32(i)*33, 2000)
	}
	sendTag(standby, flv.TypeScript, 0, 50) // the standby's timeline starts at 0
	sendTag(standby, flv.TypeVideo, 0, 3000)
	sendTag(standby, flv.TypeAudio, 10, 20)
	sendTag(standby, flv.TypeVideo, 33, 2000)
	h.EndStream(s)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	got := h.Out.Data()
	if len(got) != len(bodies) {
		t.Fatalf("%d tags, want %d", len(got), len(bodies))
	}
	last := 4700 + 9*33
	want := []uint32{uint32(last + 33), uint32(last + 33), uint32(last + 43), uint32(last + 66)}
	for i, p := range got {
		hdr, _ := flv.ParseHeader(p.Data)
		if hdr.Timestamp != p.Timestamp || !bytes.Equal(p.Data[flv.HeaderSize:], bodies[i]) {
			t.Fatalf("tag %d: header ts %d, packet ts %d, body equal %v", i, hdr.Timestamp, p.Timestamp, bytes.Equal(p.Data[flv.HeaderSize:], bodies[i]))
		}
		if i >= 10 && p.Timestamp != want[i-10] {
			t.Fatalf("standby tag %d at %d, want %d", i-10, p.Timestamp, want[i-10])
		}
	}
}
