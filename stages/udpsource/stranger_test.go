package udpsource

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/announce"
	"github.com/mediapipe/mediapipe/core/stagetest"
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
// the new one takes the name over, continuing its stream, once the old has
// been quiet for takeoverQuiet, well before the old one times out, and
// nothing it sent in the meantime is lost.
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
	// The stream goes on under the new SSRC: viewers stay.
	if ev := fmt.Sprint(events(got)); ev != "[start:live/r]" {
		t.Fatalf("events %s", ev)
	}
	checkData(t, got, starts(got)[0], append(a, b...))
}

// lineCounter is a slog handler counting the records logged.
type lineCounter struct{ n atomic.Int64 }

func (c *lineCounter) Enabled(context.Context, slog.Level) bool  { return true }
func (c *lineCounter) Handle(context.Context, slog.Record) error { c.n.Add(1); return nil }
func (c *lineCounter) WithAttrs([]slog.Attr) slog.Handler        { return c }
func (c *lineCounter) WithGroup(string) slog.Handler             { return c }

// startCounted is startSource with the stage's log lines counted.
func startCounted(t *testing.T, raw map[string]any) (*srcH, *lineCounter) {
	t.Helper()
	raw["listen"] = "127.0.0.1:0"
	st, env, clock := build(t, "udp-source", core.Spec{Name: "udp-source", Out: core.KindRTP}, New, raw)
	lines := &lineCounter{}
	env.Log = slog.New(lines)
	h := stagetest.Start(t, st, env, true)
	return &srcH{Stage: st.(*Stage), h: h, clock: clock}, lines
}

// strangerFrom is a socket bound to the loopback address ip, aimed at src.
func strangerFrom(t *testing.T, src *srcH, ip string) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)}, src.Addr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// flood sends, for n made-up SSRCs from ssrc0 on, what the audit's attack
// sent for each: SR+SDES with a made-up name and a few RTP packets.
func flood(t *testing.T, c *net.UDPConn, ssrc0 uint32, n int) {
	t.Helper()
	for i := range n {
		ssrc := ssrc0 + uint32(i)
		dgrams := [][]byte{announcement(t, ssrc, fmt.Sprintf("live/junk%d", ssrc))}
		for q := range 3 {
			dgrams = append(dgrams, rtpPacket(t, 100, ssrc, uint16(q), 0, 50))
		}
		for _, b := range dgrams {
			if _, err := c.Write(b); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestStrangerCannotExhaustStreams reproduces the stream-name exhaustion
// (issue 11, attack 1), scaled down: one address announces and sends RTP
// for more made-up SSRCs than max_streams. It may start at most
// max_streams_per_sender streams; the cloud's next stream must still start,
// and the refusals cost one log line, not one per SSRC.
func TestStrangerCannotExhaustStreams(t *testing.T) {
	const maxStreams, ssrcs = 100, 150
	src, lines := startCounted(t, map[string]any{"max_streams": int64(maxStreams)})
	goroutines := runtime.NumGoroutine()
	flood(t, strangerFrom(t, src, "127.0.0.2"), 1_000_000, ssrcs)
	perSender := src.cfg.PerSender
	if perSender >= maxStreams {
		t.Fatalf("max_streams_per_sender %d: no cap below max_streams %d", perSender, maxStreams)
	}

	// The cloud's stream, sent after the flood: once its packets are out,
	// the flood (queued before them) has all been handled.
	k := startSink(t, src.Addr().String())
	st := k.h.StartStream("live/real")
	sent := send(t, k, st, 77, 0, 50)
	testrun.Eventually(t, waitFor, "the cloud's stream started", func() bool {
		return slices.Contains(events(src.h.Out.Packets()), "start:live/real")
	})
	var real *core.Stream
	for _, s := range starts(src.h.Out.Packets()) {
		if s.Name == "live/real" {
			real = s
		}
	}
	testrun.Eventually(t, waitFor, "the cloud's packets", func() bool {
		n := 0
		for _, p := range src.h.Out.Packets() {
			if p.Stream == real && p.Event == core.EventData {
				n++
			}
		}
		return n == len(sent)
	})
	checkData(t, src.h.Out.Packets(), real, sent)
	if n := countEvents(src.h.Out, core.EventStart) - 1; n > perSender {
		t.Errorf("one stranger started %d streams (max_streams_per_sender %d)", n, perSender)
	}
	if src.overCap.Value() == 0 {
		t.Error("no too_many_from_sender drop counted")
	}
	if n := runtime.NumGoroutine(); n > goroutines+5 {
		t.Errorf("goroutines %d → %d", goroutines, n)
	}
	// A start line per stream that started (listening, the stranger's,
	// the cloud's), one line for all the refusals.
	if n := lines.n.Load(); n > int64(perSender)+3 {
		t.Errorf("%d log lines for a flood of %d SSRCs", n, ssrcs)
	}
}

// TestSendersOnly: with senders set, datagrams from any other address
// (several strangers here) start nothing and are counted; the listed
// cloud's stream is relayed whole.
func TestSendersOnly(t *testing.T) {
	src, lines := startCounted(t, map[string]any{"senders": []any{"127.0.0.1/32", "10.0.0.0/8"}})
	for i, ip := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"} {
		flood(t, strangerFrom(t, src, ip), uint32(2_000_000+1000*i), 40)
	}
	testrun.Eventually(t, waitFor, "the strangers' datagrams dropped", func() bool { return src.notAllowed.Value() == 3*40*4 })
	k := startSink(t, src.Addr().String())
	st := k.h.StartStream("live/real")
	sent := send(t, k, st, 77, 0, 50, src)
	src.h.Out.WaitData(50, waitFor)
	got := src.h.Out.Packets()
	if ev := fmt.Sprint(events(got)); ev != "[start:live/real]" {
		t.Fatalf("events %.200s, want only the cloud's stream", ev)
	}
	checkData(t, got, got[0].Stream, sent)
	if n := lines.n.Load(); n > 3 { // listening, the stream's start
		t.Errorf("%d log lines", n)
	}
}

func TestSendersParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"10.0.0.5", "10.0.0.5/32", true},
		{"10.0.0.9/24", "10.0.0.0/24", true},
		{"::ffff:10.0.0.5", "10.0.0.5/32", true},
		{"2001:db8::1/32", "2001:db8::/32", true},
		{"cloud.example", "", false},
		{"10.0.0.0/33", "", false},
		{"10.0.0.5:5222", "", false},
	} {
		got, err := parseSenders([]string{tc.in})
		if (err == nil) != tc.ok {
			t.Errorf("%q: err %v", tc.in, err)
			continue
		}
		if tc.ok && got[0].String() != tc.want {
			t.Errorf("%q: %s, want %s", tc.in, got[0], tc.want)
		}
	}
}

// TestStandbyCloudTakesOverDuringGrace: the primary cloud's publisher left
// and the primary keeps announcing the stream (SR+SDES, no RTP) through its
// reconnect_grace, while the publisher comes back through a standby cloud
// (another address, a new SSRC): the standby takes the name over once the
// primary has sent no RTP for takeoverQuiet, the same stream goes on, and
// the primary's later announcements and BYE do not touch it.
func TestStandbyCloudTakesOverDuringGrace(t *testing.T) {
	src := startSource(t, map[string]any{"stream_timeout": "10s"})
	k1 := startSink(t, src.Addr().String())
	st1 := k1.h.StartStream("live/sb")
	a := send(t, k1, st1, 1, 0, 30, src)
	src.h.Out.WaitData(30, waitFor)
	k2 := startSink(t, src.Addr().String())
	st2 := k2.h.StartStream("live/sb")
	sent := k1.h.Env.Metrics.Counter("rtcp_sent")
	for range 3 { // the primary's keep-alives while the standby waits
		src.clock.Advance(time.Second)
		n := core.CounterValue(sent)
		k1.clock.Advance(time.Second)
		testrun.Eventually(t, waitFor, "a keep-alive", func() bool { return core.CounterValue(sent) > n })
	}
	b := send(t, k2, st2, 2, 0, 30, src)
	src.h.Out.WaitData(60, waitFor)
	k1.h.EndStream(st1) // the primary's grace ran out: BYE
	k1.clock.Advance(time.Second)
	b = append(b, send(t, k2, st2, 2, 30, 10, src)...)
	src.h.Out.WaitData(70, waitFor)
	got := src.h.Out.Packets()
	if ev := fmt.Sprint(events(got)); ev != "[start:live/sb]" {
		t.Fatalf("events %s", ev)
	}
	checkData(t, got, starts(got)[0], append(a, b...))
}

// TestTakeoverQuietParam: takeover_quiet sets how long the old sender's
// RTP must have stopped before a new sender continues its name.
func TestTakeoverQuietParam(t *testing.T) {
	src := startSource(t, map[string]any{"stream_timeout": "20s", "takeover_quiet": "5s"})
	k1 := startSink(t, src.Addr().String())
	a := send(t, k1, k1.h.StartStream("live/q"), 1, 0, 20, src)
	src.h.Out.WaitData(20, waitFor)
	src.clock.Advance(3 * time.Second)
	k2 := startSink(t, src.Addr().String())
	st2 := k2.h.StartStream("live/q")
	b := send(t, k2, st2, 2, 0, 20)
	testrun.Eventually(t, waitFor, "the new SSRC held", func() bool { return core.GaugeValue(src.heldGauge) == 20 })
	if n := core.CounterValue(src.continued); n != 0 {
		t.Fatalf("taken over after 3 s of a 5 s takeover_quiet")
	}
	src.clock.Advance(2 * time.Second)
	b = append(b, send(t, k2, st2, 2, 20, 10, src)...)
	src.h.Out.WaitData(50, waitFor)
	got := src.h.Out.Packets()
	if ev := fmt.Sprint(events(got)); ev != "[start:live/q]" {
		t.Fatalf("events %s", ev)
	}
	checkData(t, got, starts(got)[0], append(a, b...))
}
