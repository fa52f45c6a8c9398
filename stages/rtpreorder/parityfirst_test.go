package rtpreorder

import (
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/fecparity"
	"github.com/mediapipe/mediapipe/core/media/rtpheader"
	"github.com/mediapipe/mediapipe/core/stagetest"
	"github.com/mediapipe/mediapipe/internal/testrun"
	_ "github.com/mediapipe/mediapipe/stages/fec" // fec-encoder
)

// fecFromParity runs n source packets of ssrc through a real fec-encoder
// (groups of 10, 2 parity each) and returns its output from the first
// parity packet on: what an edge joining mid-stream, or hearing a cloud
// that restarted, gets first.
func fecFromParity(t *testing.T, ssrc uint32, n int) [][]byte {
	t.Helper()
	h := stagetest.StartNamed(t, "fec-encoder", map[string]any{"overhead": 0.2, "group": int64(10)})
	st := h.StartStream("live/enc")
	for q := range n {
		h.SendData(st, 0, 0, rtpPacket(uint16(q), ssrc, 100))
	}
	h.Out.WaitData(n+n/10*2, testrun.WaitLimit)
	var out [][]byte
	for _, p := range h.Out.Data() {
		if len(out) > 0 || fecparity.Is(p.Data) {
			out = append(out, p.Data)
		}
	}
	if len(out) == 0 || rtpheader.PayloadType(out[0]) == 100 {
		t.Fatal("the encoder sent no parity")
	}
	return out
}

// TestParityFirst: a stream whose first packet is parity (no fec-decoder
// before rtp-reorder) does not take parity's payload type for the media's:
// the media after it goes on in order, only the parity is dropped.
func TestParityFirst(t *testing.T) {
	s, h, _ := start(t, map[string]any{}, false)
	st := h.StartStream("live/fec")
	pkts := fecFromParity(t, 0x55, 40)
	parity := 0
	for _, b := range pkts {
		if fecparity.Is(b) {
			parity++
		}
		h.SendData(st, 0, 0, b)
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
	equal(t, seqs(h, st), span(10, 30))
	if n := s.otherPT.Value(); n != float64(parity) {
		t.Errorf("other_payload_type %v, want %d (the parity)", n, parity)
	}
}
