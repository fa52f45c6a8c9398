package e2e

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/media/rtpflv"
	"github.com/mediapipe/mediapipe/core/stagetest"
	"github.com/mediapipe/mediapipe/stages/udpsource"
)

// udpWait bounds each wait of TestFLVOverTheWire: the stages work on real
// sockets on this host.
const udpWait = 5 * time.Second

// startUDP builds the stage name from raw with its spec's defaults and a
// fake clock, and runs it in a harness.
func startUDP(t *testing.T, name string, raw map[string]any, source bool) (core.Stage, *stagetest.Harness) {
	t.Helper()
	env := core.TestEnv(name)
	env.Clock = stagetest.NewFakeClock(time.Unix(1_700_000_000, 0))
	st := stagetest.Build(t, name, raw, env)
	return st, stagetest.Start(t, st, env, source)
}

// TestFLVOverTheWire: FLV tags fragmented as rtp-fragmenter does (rtpflv),
// sent by udp-sink, received by udp-source and reassembled come back whole
// and byte-identical: the two stages keep the wire format intact.
func TestFLVOverTheWire(t *testing.T) {
	srcStage, src := startUDP(t, "udp-source", map[string]any{"listen": "127.0.0.1:0"}, true)
	addr := srcStage.(*udpsource.Stage).Addr().String()
	_, sink := startUDP(t, "udp-sink", map[string]any{"destinations": []any{addr}}, false)
	st := sink.StartStream("live/flv")
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
			sink.SendData(st, 0, uint32(i*40), buf[:n])
			if packets++; packets%256 == 0 {
				src.Out.WaitData(packets-512, udpWait) // keep within the socket buffers
			}
		}
	}
	sink.EndStream(st)
	deadline := time.Now().Add(udpWait)
	for !ended(src.Out) {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for end")
		}
		time.Sleep(2 * time.Millisecond)
	}
	var r rtpflv.Reassembler
	var got [][]byte
	for _, p := range src.Out.Data() {
		if tag := r.Push(p.Data); tag != nil {
			got = append(got, append([]byte(nil), tag...))
		}
	}
	if len(got) != len(tags) {
		t.Fatalf("%d tags back of %d (%d packets sent, %d received, drops %v)", len(got), len(tags), packets, len(src.Out.Data()), r.Drops)
	}
	for i := range tags {
		if !bytes.Equal(got[i], tags[i]) {
			t.Fatalf("tag %d differs", i)
		}
	}
}

// ended reports whether c holds exactly one stream end.
func ended(c *stagetest.Collector) bool {
	n := 0
	for _, p := range c.Packets() {
		if p.Event == core.EventEnd {
			n++
		}
	}
	return n == 1
}
