package udpsource

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/media/rtpflv"
)

// TestFLVOverTheWire: FLV tags fragmented as rtp-fragmenter does (rtpflv),
// sent by udp-sink, received by udp-source and reassembled come back whole
// and byte-identical: the two stages keep the wire format intact.
func TestFLVOverTheWire(t *testing.T) {
	src := startSource(t, map[string]any{})
	k := startSink(t, src.Addr().String())
	st := k.h.StartStream("live/flv")
	rng := rand.New(rand.NewPCG(1, 2))
	frag, err := rtpflv.NewFragmenter(0x600d, 65500, 100, 1180)
	if err != nil {
		t.Fatal(err)
	}
	var tags [][]byte
	packets := 0
	buf := make([]byte, 12+1180)
	for i := range 300 {
		size := 1 + rng.IntN(3000)
		if i%60 == 0 {
			size = 150_000 // a keyframe: ~128 fragments
		}
		tag := make([]byte, flv.HeaderSize+size)
		flv.PutHeader(tag, flv.TypeVideo, uint32(size), uint32(i*40))
		for j := flv.HeaderSize; j < len(tag); j++ {
			tag[j] = byte(rng.Uint32())
		}
		tags = append(tags, tag)
		for off := 0; off < len(tag); {
			var n int
			n, off = frag.Put(buf, tag, off, uint32(i*40))
			k.h.SendData(st, 0, uint32(i*40), buf[:n])
			if packets++; packets%256 == 0 {
				src.h.Out.WaitData(packets-512, waitFor) // keep within the socket buffers
			}
		}
	}
	k.h.EndStream(st)
	waitUntil(t, "end", func() bool { return countEvents(src.h.Out, core.EventEnd) == 1 })
	var r rtpflv.Reassembler
	var got [][]byte
	for _, p := range src.h.Out.Data() {
		if tag := r.Push(p.Data); tag != nil {
			got = append(got, append([]byte(nil), tag...))
		}
	}
	if len(got) != len(tags) {
		t.Fatalf("%d tags back of %d (%d packets sent, %d received, drops %v)", len(got), len(tags), packets, len(src.h.Out.Data()), r.Drops)
	}
	for i := range tags {
		if !bytes.Equal(got[i], tags[i]) {
			t.Fatalf("tag %d differs", i)
		}
	}
}
