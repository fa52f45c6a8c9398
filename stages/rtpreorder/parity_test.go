package rtpreorder

import (
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/rtpheader"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// TestParityIgnored: fec-encoder's parity (its own SSRC and payload type)
// reaching rtp-reorder without a fec-decoder before it is dropped and
// counted; the stream's media goes on in order, the stream not restarted.
func TestParityIgnored(t *testing.T) {
	s, h, _ := start(t, map[string]any{}, false)
	st := h.StartStream("live/fec")
	for q := range uint16(30) {
		h.SendData(st, 0, 0, rtpPacket(q, 0x55, 100))
		if q%10 == 9 {
			par := rtpPacket(q/10, 0x55^0x0FEC0FEC, 60)
			par[1] = 101
			h.SendData(st, 0, 0, par)
		}
	}
	h.EndStream(st)
	testrun.Eventually(t, 5*time.Second, "the stream's end", func() bool {
		for _, p := range h.Out.Packets() {
			if p.Event == core.EventEnd {
				return true
			}
		}
		return false
	})
	equal(t, seqs(h, st), span(0, 30))
	for _, p := range h.Out.Data() {
		if rtpheader.PayloadType(p.Data) != 100 {
			t.Fatal("parity passed")
		}
	}
	if n := s.otherPT.Value(); n != 3 {
		t.Errorf("other_payload_type %v, want 3", n)
	}
}
