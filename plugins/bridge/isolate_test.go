package bridge

import (
	"bytes"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/media/rtpheader"
	"github.com/mediapipe/mediapipe/core/stagetest"
	"github.com/mediapipe/mediapipe/internal/testrun"
	_ "github.com/mediapipe/mediapipe/stages/rtpfragmenter"
)

// isolated returns the built-in stage name's definition run isolated, in a
// mediapipe binary built from this checkout.
func isolated(t testing.TB, name string) core.Definition {
	t.Helper()
	exe := testrun.Binary(t)
	old := Program
	Program = func() (string, error) { return exe, nil }
	t.Cleanup(func() { Program = old })
	def, ok := core.Default.Lookup(name)
	if !ok {
		t.Fatalf("no built-in %s", name)
	}
	iso, err := Isolate(def)
	if err != nil {
		t.Fatal(err)
	}
	return iso
}

// TestIsolateRefusesNoIsolate: a spec's NoIsolate reason is the error.
func TestIsolateRefusesNoIsolate(t *testing.T) {
	_, err := Isolate(core.Definition{Spec: core.Spec{Name: "x", NoIsolate: "it shares state with y"}})
	if err == nil || err.Error() != "x cannot run isolated: it shares state with y" {
		t.Errorf("got %v", err)
	}
}

// TestIsolatedStageRestartsWithHeaders runs rtp-fragmenter isolated: it
// fragments in the child exactly as in process, a bad parameter fails the
// Build in the parent, and after kill -9 the stage is restarted (counted),
// the new child is sent the stream's sequence headers again before the next
// tag, so its output carries them, and its RTP keeps the first child's SSRC
// and sequence.
func TestIsolatedStageRestartsWithHeaders(t *testing.T) {
	def := isolated(t, "rtp-fragmenter")
	if _, err := def.Build(map[string]any{"max_payload": 10}, core.TestEnv("rtp-fragmenter")); err == nil || !strings.Contains(err.Error(), "max_payload") {
		t.Errorf("max_payload = 10: got %v, want the parameter's error", err)
	}
	env := core.TestEnv("rtp-fragmenter")
	st, err := def.Build(map[string]any{"max_payload": 1180}, env)
	if err != nil {
		t.Fatal(err)
	}
	stage := st.(*Stage)
	h := stagetest.Start(t, st, env, false)
	s := h.StartStream("live/iso")
	avc := flv.AppendTag(nil, flv.TypeVideo, 0, []byte{0x17, flv.AVCSequenceHeader, 0, 0, 0, 1, 0x64, 0, 0x1f})
	aac := flv.AppendTag(nil, flv.TypeAudio, 0, []byte{0xaf, flv.AACSequenceHeader, 0x12, 0x10})
	h.SendData(s, flv.TypeVideo, 0, avc)
	h.SendData(s, flv.TypeAudio, 0, aac)
	feed := &videoFeed{h: h, s: s, size: 500}
	feed.send(10)
	h.Out.WaitData(12, 10*time.Second)
	if n := len(h.Out.Data()); n != 12 {
		t.Fatalf("%d data packets out for 12 tags in", n)
	}
	carries := func(from int, want []byte) bool {
		for _, p := range h.Out.Data()[from:] {
			if bytes.HasSuffix(p.Data, want) {
				return true
			}
		}
		return false
	}
	if !carries(0, avc) || !carries(0, feed.last()) {
		t.Fatal("the isolated fragmenter's output lacks the tags sent")
	}

	// Everything sent has come out: what comes next is the new child's
	// (its headers go out as soon as it starts, before the restart is
	// visible here).
	mark := len(h.Out.Data())
	pid := stage.PID()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	restarts := env.Metrics.Counter("restarts")
	testrun.Eventually(t, 10*time.Second, "the isolated stage to restart", func() bool {
		return core.CounterValue(restarts) == 1 && stage.PID() != pid && stage.PID() != 0
	})
	feed.send(5)
	h.Out.WaitData(mark+7, 10*time.Second)
	if !carries(mark, avc) || !carries(mark, aac) {
		t.Error("the restarted child was not sent the stream's sequence headers")
	}
	if !carries(mark, feed.last()) {
		t.Error("the restarted child did not pass the tags sent after the restart")
	}
	// One RTP stream across the restart: the first process's SSRC, and
	// sequence numbers going on by one (nothing was in flight at the kill).
	data := h.Out.Data()
	for i := 1; i < len(data); i++ {
		prev, cur := data[i-1].Data, data[i].Data
		if rtpheader.SSRC(cur) != rtpheader.SSRC(data[0].Data) || rtpheader.Seq(cur) != rtpheader.Seq(prev)+1 {
			t.Fatalf("packet %d of %d: ssrc %d seq %d after ssrc %d seq %d (mark %d): not one RTP stream",
				i, len(data), rtpheader.SSRC(cur), rtpheader.Seq(cur), rtpheader.SSRC(prev), rtpheader.Seq(prev), mark)
		}
	}
	h.EndStream(s)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	waitGone(t, stage.PID())
}

func (f *videoFeed) last() []byte {
	return tag(flv.TypeVideo, uint32(f.next-1), f.size, f.next-1)
}

// BenchmarkRTPFragmenter is the cost of isolate = true: packets/s through
// rtp-fragmenter built in and isolated (its own process, over the bridge).
func BenchmarkRTPFragmenter(b *testing.B) {
	for _, impl := range []string{"builtin", "isolated"} {
		b.Run(impl, func(b *testing.B) {
			def, _ := core.Default.Lookup("rtp-fragmenter")
			if impl == "isolated" {
				def = isolated(b, "rtp-fragmenter")
			}
			// One tag below max_payload: one RTP packet out per tag.
			r := startRig(b, def, "rtp-fragmenter", map[string]any{}, 1100)
			r.throughput(b)
			r.finish(b)
		})
	}
}
