package udpsource

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/rtpheader"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// parityPacket is a parity packet as fec-encoder sends it (docs/protocol.md):
// its own SSRC and payload type, the protected SSRC after the RTP header.
func parityPacket(t testing.TB, protected uint32, seq uint16) []byte {
	b := rtpPacket(t, 101, protected^0x0FEC0FEC, seq, 0, 40)
	b[1] &^= 0x80
	binary.BigEndian.PutUint32(b[rtpheader.Size:], protected)
	return b
}

// TestParity: parity through udp-sink and udp-source reaches the stream it
// protects when fec_payload_type names it, and is dropped and counted
// otherwise (an edge without fec-decoder); either way the stream stays one
// stream of its media SSRC (udp-sink does not announce the parity's SSRC).
func TestParity(t *testing.T) {
	for _, fecPT := range []int64{0, 101} {
		t.Run(fmt.Sprint("fec_payload_type=", fecPT), func(t *testing.T) {
			src := startSource(t, map[string]any{"fec_payload_type": fecPT})
			k := startSink(t, src.Addr().String())
			st := k.h.StartStream("live/fec")
			const ssrc = 0xabcdef01
			var want [][]byte
			for i := range 40 {
				b := rtpPacket(t, 100, ssrc, uint16(i), uint32(i*10), 200)
				want = append(want, b)
				k.h.SendData(st, 0, uint32(i*10), b)
				if i%10 == 9 {
					par := parityPacket(t, ssrc, uint16(i/10))
					if fecPT != 0 {
						want = append(want, par)
					}
					k.h.SendData(st, 0, 0, par)
				}
			}
			// parity of a stream no one announced
			k.h.SendData(st, 0, 0, parityPacket(t, 0x5555, 9))
			k.h.EndStream(st)
			testrun.Eventually(t, waitFor, "the stream's end", func() bool { return countEvents(src.h.Out, core.EventEnd) == 1 })
			got := src.h.Out.Packets()
			if ev := events(got); fmt.Sprint(ev) != "[start:live/fec end:live/fec]" {
				t.Fatalf("events %v", ev)
			}
			var data [][]byte
			for _, p := range got {
				if p.Event == core.EventData {
					data = append(data, p.Data)
				}
			}
			if fmt.Sprint(data) != fmt.Sprint(want) {
				t.Fatalf("%d packets out, want %d (media and, with fec_payload_type, parity in order)", len(data), len(want))
			}
			wantBadPT, wantOrphan := 5.0, 0.0
			if fecPT != 0 {
				wantBadPT, wantOrphan = 0, 1
			}
			if src.badPT.Value() != wantBadPT || src.parityOrphan.Value() != wantOrphan {
				t.Errorf("bad_payload_type %v, parity_no_stream %v; want %v, %v", src.badPT.Value(), src.parityOrphan.Value(), wantBadPT, wantOrphan)
			}
		})
	}
}
