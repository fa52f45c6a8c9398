package udpsource

import (
	"fmt"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/announce"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// stranger is a socket of someone other than the cloud, aimed at src.
func stranger(t *testing.T, src *srcH) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp4", nil, src.Addr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func announcement(t *testing.T, ssrc uint32, name string) []byte {
	t.Helper()
	b, err := announce.AppendAnnounce(nil, announce.Sender{SSRC: ssrc}, "x", name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestStrangerCannotEndOrTakeOver: while live/h is relayed, a stranger
// announces the name under another SSRC (and sends RTP for it), says BYE
// for the real SSRC, renames it, and injects RTP with the real SSRC. None of
// it may end, take over or touch the stream: the viewer sees one stream
// with exactly the cloud's packets.
func TestStrangerCannotEndOrTakeOver(t *testing.T) {
	src := startSource(t, map[string]any{})
	k := startSink(t, src.Addr().String())
	st := k.h.StartStream("live/h")
	const real = 0x1234
	sent := send(t, k, st, real, 0, 100, src)
	src.h.Out.WaitData(100, waitFor)

	junk := stranger(t, src)
	bye, err := announce.AppendBye(nil, real, "forged")
	if err != nil {
		t.Fatal(err)
	}
	forged := [][]byte{
		announcement(t, 1, "live/h"),         // the audit's repro: SR+SDES, SSRC 1, NAME live/h
		rtpPacket(t, 100, 1, 0, 0, 100),      // ... and RTP for SSRC 1, to look alive
		rtpPacket(t, 100, 1, 1, 0, 100),      //
		announcement(t, real, "live/evil"),   // rename the real SSRC
		bye,                                  // end the real SSRC
		rtpPacket(t, 100, real, 100, 0, 100), // inject into the real stream
	}
	for _, b := range forged {
		if _, err := junk.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	// The cloud goes on (its datagrams queue behind the stranger's), and
	// sends its periodic SR+SDES: the stream must still be the same one.
	sent = append(sent, send(t, k, st, real, 100, 100, src)...)
	k.clock.Advance(time.Second)
	sent = append(sent, send(t, k, st, real, 200, 100, src)...)
	src.h.Out.WaitData(300, waitFor)
	k.h.EndStream(st)
	testrun.Eventually(t, waitFor, "the stream's end", func() bool { return countEvents(src.h.Out, core.EventEnd) >= 1 })
	got := src.h.Out.Packets()
	if ev := fmt.Sprint(events(got)); ev != "[start:live/h end:live/h]" {
		t.Fatalf("events %s, want the one real stream", ev)
	}
	checkData(t, got, got[0].Stream, sent)
	if v := src.foreign.Value(); v != 3 {
		t.Errorf("wrong_sender = %v, want 3 (rename, BYE, injected RTP)", v)
	}
	src.clock.Advance(namedHold)
	testrun.Eventually(t, waitFor, "SSRC 1's held packets dropped", func() bool { return src.nameTaken.Value() == 2 })
}

// TestSDESAloneMakesNoStream: announcements without RTP (5000 names from a
// stranger) start no stream and leave only bounded state behind.
func TestSDESAloneMakesNoStream(t *testing.T) {
	src := startSource(t, map[string]any{})
	k := startSink(t, src.Addr().String())
	junk := stranger(t, src)
	goroutines := runtime.NumGoroutine()
	for i := range 5000 {
		if _, err := junk.Write(announcement(t, uint32(10_000+i), fmt.Sprintf("live/fake%d", i))); err != nil {
			t.Fatal(err)
		}
		if i%200 == 199 {
			time.Sleep(time.Millisecond) // stay within the socket buffer
		}
	}
	// A real stream after them: once its packets are out, the stranger's
	// datagrams (queued before) have all been handled.
	st := k.h.StartStream("live/real")
	sent := send(t, k, st, 77, 0, 50, src)
	src.h.Out.WaitData(50, waitFor)
	got := src.h.Out.Packets()
	if ev := fmt.Sprint(events(got)); ev != "[start:live/real]" {
		t.Fatalf("events %.200s, want only the real stream", ev)
	}
	checkData(t, got, got[0].Stream, sent)
	if n := runtime.NumGoroutine(); n > goroutines+5 {
		t.Errorf("goroutines %d → %d", goroutines, n)
	}
	if err := src.h.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestMaxStreams: named SSRCs with RTP past max_streams start nothing; their
// packets are dropped and counted.
func TestMaxStreams(t *testing.T) {
	src := startSource(t, map[string]any{"max_streams": int64(2)})
	c := stranger(t, src)
	var dgrams [][]byte
	for i := range 4 {
		ssrc := uint32(500 + i)
		dgrams = append(dgrams, announcement(t, ssrc, fmt.Sprintf("live/s%d", i)))
		for q := range 10 {
			dgrams = append(dgrams, rtpPacket(t, 100, ssrc, uint16(q), 0, 50))
		}
	}
	for _, b := range dgrams {
		c.Write(b)
	}
	src.h.Out.WaitData(20, waitFor)
	testrun.Eventually(t, waitFor, "the other streams' packets dropped", func() bool { return src.Stage.tooMany.Value() == 20 })
	if ev := fmt.Sprint(events(src.h.Out.Packets())); ev != "[start:live/s0 start:live/s1]" {
		t.Fatalf("events %s", ev)
	}
}

// TestCloudRestartTakesOver: the cloud comes back from another socket with
// a new SSRC for the same name while the old one has gone quiet (no BYE):
// the new one takes the name over once the old has been quiet for
// takeoverQuiet, well before the old one times out, and nothing it sent in
// the meantime is lost.
func TestCloudRestartTakesOver(t *testing.T) {
	src := startSource(t, map[string]any{"stream_timeout": "10s"})
	k1 := startSink(t, src.Addr().String())
	a := send(t, k1, k1.h.StartStream("live/r"), 1, 0, 30, src)
	src.h.Out.WaitData(30, waitFor)
	src.clock.Advance(time.Second) // the old cloud is gone
	k2 := startSink(t, src.Addr().String())
	st2 := k2.h.StartStream("live/r")
	b := send(t, k2, st2, 2, 0, 30)
	testrun.Eventually(t, waitFor, "the new SSRC held", func() bool { return core.GaugeValue(src.heldGauge) == 30 })
	if n := countEvents(src.h.Out, core.EventStart); n != 1 {
		t.Fatalf("%d starts while the old sender may still be there", n)
	}
	src.clock.Advance(takeoverQuiet - time.Second)
	b = append(b, send(t, k2, st2, 2, 30, 30, src)...)
	src.h.Out.WaitData(90, waitFor)
	got := src.h.Out.Packets()
	if ev := fmt.Sprint(events(got)); ev != "[start:live/r end:live/r start:live/r]" {
		t.Fatalf("events %s", ev)
	}
	streams := starts(got)
	checkData(t, got, streams[0], a)
	checkData(t, got, streams[1], b)
}
