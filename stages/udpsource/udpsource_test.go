package udpsource

import (
	"bytes"
	"fmt"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/announce"
	"github.com/mediapipe/mediapipe/core/media/rtpheader"
	"github.com/mediapipe/mediapipe/core/stagetest"
	"github.com/mediapipe/mediapipe/internal/testrun"
	"github.com/mediapipe/mediapipe/stages/udpsink"
)

const waitFor = 5 * time.Second

func rtpPacket(t testing.TB, pt uint8, ssrc uint32, seq uint16, ts uint32, size int) []byte {
	t.Helper()
	b := make([]byte, rtpheader.Size+size)
	rtpheader.Put(b, rtpheader.Header{Marker: true, PayloadType: pt, Seq: seq, Timestamp: ts, SSRC: ssrc})
	payload := b[rtpheader.Size:]
	for i := range payload {
		payload[i] = byte(int(seq)*7 + i)
	}
	return b
}

// build makes a stage of def from raw parameters with its own fake clock.
func build[C any](t testing.TB, name string, spec core.Spec, newStage func(*C, *core.Env) (core.Stage, error), raw map[string]any) (core.Stage, *core.Env, *stagetest.FakeClock) {
	t.Helper()
	env := core.TestEnv(name)
	clock := stagetest.NewFakeClock(time.Unix(1_700_000_000, 0))
	env.Clock = clock
	st, err := core.Define(spec, newStage).Build(raw, env)
	if err != nil {
		t.Fatal(err)
	}
	return st, env, clock
}

type srcH struct {
	*Stage
	h     *stagetest.Harness
	clock *stagetest.FakeClock
}

func startSource(t testing.TB, raw map[string]any) *srcH {
	t.Helper()
	if raw["listen"] == nil {
		raw["listen"] = "127.0.0.1:0"
	}
	st, env, clock := build(t, "udp-source", core.Spec{Name: "udp-source", Out: core.KindRTP}, New, raw)
	h := stagetest.Start(t, st, env, true)
	return &srcH{Stage: st.(*Stage), h: h, clock: clock}
}

type sink struct {
	h     *stagetest.Harness
	clock *stagetest.FakeClock
}

func startSink(t testing.TB, dests ...string) *sink {
	t.Helper()
	list := make([]any, len(dests))
	for i, d := range dests {
		list[i] = d
	}
	return startSinkRaw(t, map[string]any{"destinations": list})
}

func startSinkRaw(t testing.TB, raw map[string]any) *sink {
	t.Helper()
	st, env, clock := build(t, "udp-sink", core.Spec{Name: "udp-sink", In: core.KindRTP}, udpsink.New, raw)
	return &sink{h: stagetest.Start(t, st, env, false), clock: clock}
}

// waitUntil polls cond (the stage works on real sockets) until it holds.
// shape summarises collected packets: "start:NAME", "data", "end:NAME".
func events(ps []stagetest.Captured) []string {
	var out []string
	for _, p := range ps {
		switch p.Event {
		case core.EventStart:
			out = append(out, "start:"+p.Stream.Name)
		case core.EventEnd:
			out = append(out, "end:"+p.Stream.Name)
		}
	}
	return out
}

func countEvents(c *stagetest.Collector, ev core.Event) int {
	n := 0
	for _, p := range c.Packets() {
		if p.Event == ev {
			n++
		}
	}
	return n
}

// checkData compares the data packets of stream st with want, byte for byte.
func checkData(t testing.TB, got []stagetest.Captured, st *core.Stream, want [][]byte) {
	t.Helper()
	var data []stagetest.Captured
	for _, p := range got {
		if p.Event == core.EventData && p.Stream == st {
			data = append(data, p)
		}
	}
	if len(data) != len(want) {
		t.Fatalf("stream %s: %d data packets, want %d", st.Name, len(data), len(want))
	}
	for i := range want {
		if !bytes.Equal(data[i].Data, want[i]) {
			t.Fatalf("stream %s: packet %d differs (%d bytes, want %d)", st.Name, i, len(data[i].Data), len(want[i]))
		}
		if data[i].Timestamp != rtpheader.Timestamp(want[i]) {
			t.Fatalf("packet %d: Timestamp %d, want the RTP timestamp %d", i, data[i].Timestamp, rtpheader.Timestamp(want[i]))
		}
	}
}

// starts is the streams started in ps, in order.
func starts(ps []stagetest.Captured) []*core.Stream {
	var out []*core.Stream
	for _, p := range ps {
		if p.Event == core.EventStart {
			out = append(out, p.Stream)
		}
	}
	return out
}

func firstStream(t testing.TB, c *stagetest.Collector) *core.Stream {
	t.Helper()
	st := starts(c.Packets())
	if len(st) == 0 {
		t.Fatal("no stream started")
	}
	return st[0]
}

// send puts n packets of one stream through the sink; sizes vary, some
// exceed the source's 2 KiB slot to take the scatter path. It stays at most
// 512 packets ahead of every receiver in rx, so socket buffers never overflow.
func send(t testing.TB, k *sink, st *core.Stream, ssrc uint32, seq0 uint16, n int, rx ...*srcH) [][]byte {
	t.Helper()
	base := make([]int, len(rx))
	for j, r := range rx {
		base[j] = len(r.h.Out.Data())
	}
	var sent [][]byte
	for i := range n {
		size := 1 + (i*37)%1180
		switch i % 500 {
		case 17:
			size = 5000
		case 251:
			size = 60000
		}
		b := rtpPacket(t, 100, ssrc, seq0+uint16(i), uint32(i*33), size)
		sent = append(sent, b)
		k.h.SendData(st, 0, uint32(i*33), b)
		if i%256 == 255 {
			for j, r := range rx {
				r.h.Out.WaitData(base[j]+i+1-512, waitFor)
			}
		}
	}
	return sent
}

func TestRoundTrip(t *testing.T) {
	src := startSource(t, map[string]any{})
	k := startSink(t, src.Addr().String())
	st := k.h.StartStream("live/movie")
	sent := send(t, k, st, 0xabcdef01, 65000, 3000, src)
	k.h.EndStream(st)
	testrun.Eventually(t, waitFor, "the stream's end", func() bool { return countEvents(src.h.Out, core.EventEnd) == 1 })
	got := src.h.Out.Packets()
	if ev := events(got); fmt.Sprint(ev) != "[start:live/movie end:live/movie]" {
		t.Fatalf("events %v", ev)
	}
	if got[0].Event != core.EventStart || got[len(got)-1].Event != core.EventEnd {
		t.Fatalf("stream not framed by start and end")
	}
	checkData(t, got, got[0].Stream, sent)
	if v := src.unnamed.Value() + src.junk.Value() + src.badPT.Value(); v != 0 {
		t.Errorf("drops counted on a clean stream: %v", v)
	}
}

func TestSilenceEndsStreamAndResume(t *testing.T) {
	src := startSource(t, map[string]any{"stream_timeout": "3s"})
	k := startSink(t, src.Addr().String())
	st := k.h.StartStream("live/quiet")
	sent := send(t, k, st, 5, 0, 20)
	src.h.Out.WaitData(20, waitFor)
	src.clock.Advance(2 * time.Second)
	time.Sleep(300 * time.Millisecond) // longer than a housekeeping tick: must NOT end yet
	if n := countEvents(src.h.Out, core.EventEnd); n != 0 {
		t.Fatalf("stream ended before its timeout")
	}
	src.clock.Advance(time.Second)
	testrun.Eventually(t, waitFor, "end after silence", func() bool { return countEvents(src.h.Out, core.EventEnd) == 1 })
	checkData(t, src.h.Out.Packets(), firstStream(t, src.h.Out), sent)

	// The same SSRC speaks again: held until the next SDES names it, then a new stream.
	more := send(t, k, st, 5, 20, 5)
	k.clock.Advance(time.Second) // the sink's periodic SR+SDES
	testrun.Eventually(t, waitFor, "second start", func() bool { return countEvents(src.h.Out, core.EventStart) == 2 })
	src.h.Out.WaitData(25, waitFor)
	checkData(t, src.h.Out.Packets(), starts(src.h.Out.Packets())[1], more)
}

// TestReconnectNewSSRC: the cloud announces a new SSRC for a live name
// (its stream restarted upstream, and the old one's BYE was lost): the new
// SSRC continues the same stream, so viewers stay; the old SSRC is done.
func TestReconnectNewSSRC(t *testing.T) {
	src := startSource(t, map[string]any{})
	k := startSink(t, src.Addr().String())
	first := k.h.StartStream("live/movie")
	a := send(t, k, first, 111, 0, 50)
	src.h.Out.WaitData(50, waitFor)
	// The publisher came back: a new upstream stream with a new SSRC, and
	// the old one never said BYE.
	second := k.h.StartStream("live/movie")
	b := send(t, k, second, 222, 0, 50)
	src.h.Out.WaitData(100, waitFor)
	// Late packets of the replaced SSRC must not come back to life.
	send(t, k, first, 111, 50, 3)
	k.h.EndStream(second)
	testrun.Eventually(t, waitFor, "the end", func() bool { return countEvents(src.h.Out, core.EventEnd) == 1 })
	testrun.Eventually(t, waitFor, "late packets dropped", func() bool { return src.unnamed.Value() == 3 })
	got := src.h.Out.Packets()
	if ev := fmt.Sprint(events(got)); ev != "[start:live/movie end:live/movie]" {
		t.Fatalf("events %s", ev)
	}
	if n := core.CounterValue(src.continued); n != 1 {
		t.Fatalf("streams_continued %v, want 1", n)
	}
	checkData(t, got, starts(got)[0], append(a, b...))
}

func TestJunkNeverMakesAStream(t *testing.T) {
	src := startSource(t, map[string]any{"unnamed_hold": "1s"})
	k := startSink(t, src.Addr().String())
	junk, err := net.DialUDP("udp4", nil, src.Addr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer junk.Close()
	st := k.h.StartStream("live/movie")
	const realSSRC = 77
	var sent [][]byte
	var strangers, wrongPT, garbage int
	for i := range 600 {
		b := rtpPacket(t, 100, realSSRC, uint16(i), uint32(i), 1000)
		sent = append(sent, b)
		k.h.SendData(st, 0, uint32(i), b)
		switch i % 6 {
		case 0: // random-looking bytes, text, a version-1 header, a short datagram
			for _, g := range [][]byte{[]byte("GET / HTTP/1.0\r\n\r\n"), {0x40, 100, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1}, {0x80}, bytes.Repeat([]byte{0xff}, 300)} {
				junk.Write(g)
				garbage++
			}
		case 1: // RTP-shaped, from SSRCs nobody named (20 of them: more than the pending cap)
			junk.Write(rtpPacket(t, 100, uint32(1000+i%20), uint16(i), 0, 100))
			strangers++
		case 2: // the real SSRC, wrong payload type
			junk.Write(rtpPacket(t, 101, realSSRC, uint16(i), 0, 100))
			wrongPT++
		case 3: // RTCP-shaped garbage
			junk.Write([]byte{0x81, 202, 0, 50, 1, 2, 3, 4, 5})
			garbage++
		}
		if i%100 == 99 {
			src.h.Out.WaitData(i+1-200, waitFor)
		}
	}
	src.h.Out.WaitData(len(sent), waitFor)
	src.clock.Advance(time.Second) // unnamed hold over: strangers' packets dropped
	testrun.Eventually(t, waitFor, "strangers dropped", func() bool { return src.unnamed.Value() == float64(strangers) })
	testrun.Eventually(t, waitFor, "junk counted", func() bool {
		return src.junk.Value() == float64(garbage) && src.badPT.Value() == float64(wrongPT)
	})
	got := src.h.Out.Packets()
	if ev := fmt.Sprint(events(got)); ev != "[start:live/movie]" {
		t.Fatalf("events %s", ev)
	}
	checkData(t, got, got[0].Stream, sent)
	if err := src.h.Close(); err != nil {
		t.Fatal(err)
	}
	if ev := fmt.Sprint(events(src.h.Out.Packets())); ev != "[start:live/movie end:live/movie]" {
		t.Fatalf("events after close %s", ev)
	}
}

// TestHeldUntilNamed: RTP that comes before its SDES (an edge that joins
// mid-stream) is held and released in order once named.
func TestHeldUntilNamed(t *testing.T) {
	src := startSource(t, map[string]any{})
	c, err := net.DialUDP("udp4", nil, src.Addr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var sent [][]byte
	for i := range 5 {
		b := rtpPacket(t, 100, 42, uint16(i), uint32(i), 200)
		sent = append(sent, b)
		c.Write(b)
	}
	// Datagrams from one socket on loopback keep their order: these five
	// reach the source before the SDES below.
	ann, err := announce.AppendAnnounce(nil, announce.Sender{SSRC: 42}, "test", "live/late")
	if err != nil {
		t.Fatal(err)
	}
	c.Write(ann)
	for i := 5; i < 10; i++ {
		b := rtpPacket(t, 100, 42, uint16(i), uint32(i), 200)
		sent = append(sent, b)
		c.Write(b)
	}
	src.h.Out.WaitData(10, waitFor)
	got := src.h.Out.Packets()
	if got[0].Event != core.EventStart || got[0].Stream.Name != "live/late" {
		t.Fatalf("first packet is %v, want the stream's start", got[0].Event)
	}
	checkData(t, got, got[0].Stream, sent)
	// Closing the source ends the stream.
	if err := src.h.Close(); err != nil {
		t.Fatal(err)
	}
	if ev := fmt.Sprint(events(src.h.Out.Packets())); ev != "[start:live/late end:live/late]" {
		t.Fatalf("events after close %s", ev)
	}
}

func TestOpenErrors(t *testing.T) {
	taken, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, listen := range []string{taken.LocalAddr().String(), "nonsense"} {
		st, err := New(&Config{Listen: listen, Batch: 1, PayloadType: 100, StreamTimeout: time.Second}, core.TestEnv("udp-source"))
		if err != nil {
			t.Fatal(err)
		}
		if err := st.(*Stage).Open(t.Context()); err == nil {
			t.Errorf("Open(%q) succeeded", listen)
		}
	}
}

func TestRoundTripIPv6(t *testing.T) {
	if c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		c.Close()
	}
	src := startSource(t, map[string]any{"listen": "[::1]:0"})
	k := startSink(t, src.Addr().String())
	st := k.h.StartStream("live/six")
	sent := send(t, k, st, 6, 0, 600, src)
	k.h.EndStream(st)
	testrun.Eventually(t, waitFor, "end", func() bool { return countEvents(src.h.Out, core.EventEnd) == 1 })
	checkData(t, src.h.Out.Packets(), firstStream(t, src.h.Out), sent)
}

// TestOneDestinationDown: the sink's other destination refuses (nobody
// listens); the source still gets every packet.
func TestOneDestinationDown(t *testing.T) {
	dead, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.LocalAddr().String()
	dead.Close()
	src := startSource(t, map[string]any{})
	k := startSink(t, deadAddr, src.Addr().String())
	st := k.h.StartStream("live/movie")
	sent := send(t, k, st, 8, 0, 2000, src)
	k.h.EndStream(st)
	testrun.Eventually(t, waitFor, "end", func() bool { return countEvents(src.h.Out, core.EventEnd) == 1 })
	checkData(t, src.h.Out.Packets(), firstStream(t, src.h.Out), sent)
}

// TestKernelDropsCounted: a burst longer than the socket buffer loses
// datagrams in the kernel; they are counted (socket_overflow), so every
// datagram sent is accounted for.
func TestKernelDropsCounted(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("SO_MEMINFO is Linux's")
	}
	const burst = 2000
	src := startSource(t, map[string]any{"read_buffer": int64(1)}) // the kernel's minimum
	c := stranger(t, src)
	b := make([]byte, 1200) // junk: not RTP
	for range burst {
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	testrun.Eventually(t, waitFor, "every datagram counted", func() bool {
		return src.junk.Value()+src.overflow.Value() == burst
	})
	if src.overflow.Value() == 0 {
		t.Skip("the stage kept up with the burst: nothing to count")
	}
}
