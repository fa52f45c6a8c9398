package udpsink

import (
	"bytes"
	"testing"

	"github.com/mediapipe/mediapipe/core/media/announce"
	"github.com/mediapipe/mediapipe/core/media/fecparity"
	"github.com/mediapipe/mediapipe/core/stagetest"
	"github.com/mediapipe/mediapipe/internal/testrun"
	_ "github.com/mediapipe/mediapipe/stages/fec" // fec-encoder
)

// TestParityFirst: a stream whose first packet is fec-encoder's parity (the
// encoder's group under way when a cloud's pipeline restarts) is announced
// with the media's SSRC, not parity's, and every packet, parity and media,
// goes out unchanged and in order.
func TestParityFirst(t *testing.T) {
	const ssrc = 0x5151
	enc := stagetest.StartNamed(t, "fec-encoder", map[string]any{"overhead": 0.2, "group": int64(10)})
	es := enc.StartStream("live/enc")
	for q := range 30 {
		enc.SendData(es, 0, uint32(q), rtpPacket(t, ssrc, uint16(q), uint32(q), 200))
	}
	var pkts [][]byte
	for _, p := range enc.Out.WaitData(36, testrun.WaitLimit) {
		if len(pkts) > 0 || fecparity.Is(p.Data) {
			pkts = append(pkts, p.Data)
		}
	}
	if len(pkts) != 26 {
		t.Fatalf("%d packets from the first parity on, want 26", len(pkts))
	}

	rx := listen(t)
	_, h := startSink(t, Config{Destinations: []string{rx.LocalAddr().String()}})
	s := h.StartStream("live/parity-first")
	for _, b := range pkts {
		h.SendData(s, 0, 0, b)
	}
	var got [][]byte
	var first *announce.Report
	for len(got) < len(pkts) {
		b := read(t, rx)
		if announce.Classify(b) == announce.RTP {
			got = append(got, b)
			continue
		}
		if first == nil {
			r := parseRTCP(t, b)
			first = &r
		}
	}
	for i := range pkts {
		if !bytes.Equal(got[i], pkts[i]) {
			t.Fatalf("datagram %d differs or is out of order", i)
		}
	}
	if first == nil || len(first.Senders) != 1 || first.Senders[0].SSRC != ssrc || len(first.Names) != 1 || first.Names[0].SSRC != ssrc {
		t.Fatalf("first announcement %+v: want the media's SSRC %#x", first, ssrc)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
}
