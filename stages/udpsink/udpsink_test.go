package udpsink

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/announce"
	"github.com/mediapipe/mediapipe/core/media/rtpheader"
	"github.com/mediapipe/mediapipe/core/stagetest"
)

// rtpPacket marshals one RTP packet as rtp-fragmenter would.
func rtpPacket(t testing.TB, ssrc uint32, seq uint16, ts uint32, size int) []byte {
	t.Helper()
	b := make([]byte, rtpheader.Size+size)
	rtpheader.Put(b, rtpheader.Header{Marker: true, PayloadType: 100, Seq: seq, Timestamp: ts, SSRC: ssrc})
	payload := b[rtpheader.Size:]
	for i := range payload {
		payload[i] = byte(int(seq) + i)
	}
	return b
}

func listen(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadBuffer(8 << 20)
	t.Cleanup(func() { c.Close() })
	return c
}

func startSink(t testing.TB, cfg Config) (*Stage, *stagetest.Harness) {
	t.Helper()
	def := core.Define(core.Spec{Name: "udp-sink", In: core.KindRTP}, New)
	raw := map[string]any{"destinations": cfg.Destinations}
	if cfg.Batch > 0 {
		raw["batch"] = int64(cfg.Batch)
	}
	env := core.TestEnv("udp-sink")
	clock := stagetest.NewFakeClock(time.Unix(1_700_000_000, 0))
	env.Clock = clock
	st, err := def.Build(raw, env)
	if err != nil {
		t.Fatal(err)
	}
	h := stagetest.Start(t, st, env, false)
	h.Clock = clock
	return st.(*Stage), h
}

func read(t testing.TB, c *net.UDPConn) []byte {
	t.Helper()
	buf := make([]byte, 70000)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return buf[:n]
}

func parseRTCP(t testing.TB, b []byte) announce.Report {
	t.Helper()
	var r announce.Report
	if err := announce.Parse(b, &r); err != nil {
		t.Fatalf("want RTCP, got %d bytes (%x...): %v", len(b), b[:min(len(b), 4)], err)
	}
	return r
}

// TestWire checks what goes on the wire: SR+SDES before the first RTP
// packet, the RTP bytes unchanged, an SR every second with the counts, BYE
// at the end.
func TestWire(t *testing.T) {
	rx := listen(t)
	_, h := startSink(t, Config{Destinations: []string{rx.LocalAddr().String()}})
	s := h.StartStream("live/movie")
	const ssrc = 0x1234abcd
	var sent [][]byte
	for i := range 10 {
		b := rtpPacket(t, ssrc, uint16(65530+i), uint32(1000+i*40), 100+i)
		sent = append(sent, b)
		h.SendData(s, 0, uint32(1000+i*40), b)
	}
	first := parseRTCP(t, read(t, rx))
	if len(first.Senders) != 1 || first.Senders[0].SSRC != ssrc || first.Senders[0].Packets != 0 || first.Senders[0].RTPTime != 1000 {
		t.Errorf("first SR %+v", first.Senders)
	}
	if len(first.Names) != 1 || first.Names[0].Name != "live/movie" || first.Names[0].SSRC != ssrc || first.Names[0].CNAME == "" {
		t.Errorf("first SDES %+v", first.Names)
	}
	octets := 0
	for i, want := range sent {
		if got := read(t, rx); !bytes.Equal(got, want) {
			t.Fatalf("datagram %d differs: %d bytes, want %d", i, len(got), len(want))
		}
		octets += len(want) - 12
	}
	h.Clock.Advance(time.Second)
	sr := parseRTCP(t, read(t, rx))
	if len(sr.Senders) != 1 || sr.Senders[0].Packets != 10 || int(sr.Senders[0].Octets) != octets || len(sr.Names) != 1 {
		t.Errorf("periodic SR %+v names %+v; want 10 packets, %d octets", sr.Senders, sr.Names, octets)
	}
	// 1 s after the last packet, the RTP clock (ms) has moved on 1000.
	if want := uint32(1000+9*40) + 1000; sr.Senders[0].RTPTime != want {
		t.Errorf("SR RTP time %d, want %d", sr.Senders[0].RTPTime, want)
	}
	h.EndStream(s)
	bye := parseRTCP(t, read(t, rx))
	if len(bye.Byes) != 1 || bye.Byes[0] != ssrc {
		t.Errorf("BYE %+v", bye)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestFailingDestination: a destination nobody listens on (ICMP refusals
// make its connected socket fail) loses packets and counts them; the other
// gets every packet.
func TestFailingDestination(t *testing.T) {
	dead := listen(t)
	deadAddr := dead.LocalAddr().String()
	dead.Close()
	rx := listen(t)
	st, h := startSink(t, Config{Destinations: []string{deadAddr, rx.LocalAddr().String()}, Batch: 8})
	s := h.StartStream("live/movie")
	const n = 500
	var sent [][]byte
	next := func() {
		i := len(sent)
		b := rtpPacket(t, 7, uint16(i), uint32(i), 1000)
		sent = append(sent, b)
		h.SendData(s, 0, uint32(i), b)
	}
	for range n {
		next()
	}
	// ICMP refusals come back asynchronously: keep sending until one counts.
	deadline := time.Now().Add(5 * time.Second)
	for st.sendErr.Value() == 0 && time.Now().Before(deadline) && len(sent) < 5000 {
		next()
		time.Sleep(time.Millisecond)
	}
	parseRTCP(t, read(t, rx))
	for i, want := range sent {
		if got := read(t, rx); !bytes.Equal(got, want) {
			t.Fatalf("datagram %d differs", i)
		}
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if st.sendErr.Value() == 0 {
		t.Error("no send_error counted for the refusing destination")
	}
	t.Logf("send_error = %v", st.sendErr.Value())
}

func TestBadRTPDropped(t *testing.T) {
	rx := listen(t)
	st, h := startSink(t, Config{Destinations: []string{rx.LocalAddr().String()}})
	s := h.StartStream("live/x")
	h.SendData(s, 0, 0, []byte{1, 2, 3})
	good := rtpPacket(t, 9, 1, 1, 10)
	h.SendData(s, 0, 0, good)
	parseRTCP(t, read(t, rx))
	if got := read(t, rx); !bytes.Equal(got, good) {
		t.Fatal("good packet changed")
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if st.badRTP.Value() != 1 {
		t.Errorf("bad_rtp = %v, want 1", st.badRTP.Value())
	}
}

func TestValidate(t *testing.T) {
	def := core.Define(core.Spec{Name: "udp-sink", In: core.KindRTP}, New)
	for _, c := range []struct {
		name string
		raw  map[string]any
		ok   bool
	}{
		{"unicast", map[string]any{"destinations": []any{"127.0.0.1:5222"}}, true},
		{"v6 and multicast", map[string]any{"destinations": []any{"[::1]:5222", "239.1.1.1:5222"}, "ttl": int64(16)}, true},
		{"missing", map[string]any{}, false},
		{"empty list", map[string]any{"destinations": []any{}}, false},
		{"no port", map[string]any{"destinations": []any{"127.0.0.1"}}, false},
		{"bad port", map[string]any{"destinations": []any{"127.0.0.1:70000"}}, false},
		{"ttl too big", map[string]any{"destinations": []any{"127.0.0.1:1"}, "ttl": int64(300)}, false},
		{"batch zero", map[string]any{"destinations": []any{"127.0.0.1:1"}, "batch": int64(0)}, false},
		{"batch wait", map[string]any{"destinations": []any{"127.0.0.1:1"}, "batch_wait": "200us", "gso": false}, true},
		{"batch wait off", map[string]any{"destinations": []any{"127.0.0.1:1"}, "batch_wait": "0s"}, true},
		{"batch wait too long", map[string]any{"destinations": []any{"127.0.0.1:1"}, "batch_wait": "1s"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			errs := def.Check(c.raw)
			if (len(errs) == 0) != c.ok {
				t.Errorf("Check = %v, want ok=%v", errs, c.ok)
			}
		})
	}
}

func TestOpenFailsOnBadInterface(t *testing.T) {
	st, _ := New(&Config{Destinations: []string{"239.1.1.1:5000"}, Interface: "nosuchnic0", Batch: 1}, core.TestEnv("udp-sink"))
	if err := st.(*Stage).Open(t.Context()); err == nil {
		t.Fatal("Open accepted a missing interface")
	}
}

// TestUnnamableStream: a name SDES cannot carry is not announced (and is
// logged once), but its packets still go out.
func TestUnnamableStream(t *testing.T) {
	rx := listen(t)
	_, h := startSink(t, Config{Destinations: []string{rx.LocalAddr().String()}})
	s := h.StartStream("live/" + strings.Repeat("x", 300))
	a, b := rtpPacket(t, 3, 1, 1, 10), rtpPacket(t, 3, 2, 2, 10)
	h.SendData(s, 0, 1, a)
	h.Clock.Advance(time.Second)
	h.SendData(s, 0, 2, b)
	for _, want := range [][]byte{a, b} {
		if got := read(t, rx); !bytes.Equal(got, want) {
			t.Fatalf("got %x..., want the RTP packet", got[:4])
		}
	}
}

// TestGSORuns sends batches cut into GSO runs (equal sizes, a shorter one
// ending a run, runs longer than 64 segments or 65000 bytes, RTCP between)
// and checks that the receiver gets every datagram, bytes and order intact,
// with GSO on and off. The batch is built and flushed directly so its
// makeup does not depend on goroutine timing.
func TestGSORuns(t *testing.T) {
	sizes := func(groups ...[2]int) []int { // {count, payload size}
		var out []int
		for _, g := range groups {
			for range g[0] {
				out = append(out, g[1])
			}
		}
		return out
	}
	cases := []struct {
		name  string
		sizes []int
	}{
		{"one", sizes([2]int{1, 1188})},
		{"equal", sizes([2]int{10, 1188})},
		{"short ends run", sizes([2]int{5, 1188}, [2]int{1, 300}, [2]int{3, 1188})},
		{"growing", sizes([2]int{1, 100}, [2]int{1, 200}, [2]int{2, 300})},
		{"more than 64", sizes([2]int{100, 200})},
		{"more than 64 KB", sizes([2]int{60, 1400})},
		{"interleaved", []int{1188, 1188, 50, 1188, 1188, 1188, 50, 50, 50}},
	}
	for _, useGSO := range []bool{true, false} {
		for _, c := range cases {
			t.Run(c.name+map[bool]string{true: "/gso", false: "/sendmmsg"}[useGSO], func(t *testing.T) {
				sendRuns(t, listen(t), c.sizes, useGSO)
			})
		}
	}
	t.Run("ipv6", func(t *testing.T) {
		rx, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
		if err != nil {
			t.Skipf("no IPv6 loopback: %v", err)
		}
		t.Cleanup(func() { rx.Close() })
		sendRuns(t, rx, sizes([2]int{5, 1188}, [2]int{1, 300}, [2]int{3, 1188}), true)
	})
}

// sendRuns builds one batch of RTP packets of the given payload sizes,
// flushes it to rx and checks every datagram.
func sendRuns(t *testing.T, rx *net.UDPConn, sizes []int, useGSO bool) {
	t.Helper()
	st := newStage(&Config{Destinations: []string{rx.LocalAddr().String()}, Batch: 128, GSO: useGSO}, core.TestEnv("udp-sink"))
	if err := st.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer st.closeAll()
	if useGSO && !st.dests.Load().dests[0].gso {
		t.Skip("kernel without UDP_SEGMENT")
	}
	s := core.NewStream("live/gso")
	st.now = time.Now()
	st.handle(core.NewEvent(core.EventStart, s))
	var sent [][]byte
	for i, n := range sizes {
		b := rtpPacket(t, 5, uint16(i), uint32(i), n)
		sent = append(sent, b)
		p := core.NewPacket(len(b))
		copy(p.Data, b)
		p.Stream = s
		st.handle(p)
	}
	st.flush()
	parseRTCP(t, read(t, rx)) // the stream's first SR+SDES
	for i, want := range sent {
		if got := read(t, rx); !bytes.Equal(got, want) {
			t.Fatalf("datagram %d: %d bytes, want %d (%x...)", i, len(got), len(want), got[:min(len(got), 4)])
		}
	}
	if useGSO && len(sizes) > 1 && st.gsoSends == 0 {
		t.Error("no GSO send")
	}
	if !useGSO && st.gsoSends != 0 {
		t.Errorf("%d GSO sends with gso off", st.gsoSends)
	}
	if st.sendErr.Value() != 0 {
		t.Errorf("send_error = %v", st.sendErr.Value())
	}
}

// TestBatchWait: with batch_wait, packets that arrive while a partial batch
// waits join it, and a lone packet still goes out once the wait ends.
func TestBatchWait(t *testing.T) {
	rx := listen(t)
	def := core.Define(core.Spec{Name: "udp-sink", In: core.KindRTP}, New)
	env := core.TestEnv("udp-sink")
	env.Clock = stagetest.NewFakeClock(time.Unix(1_700_000_000, 0)) // the wait is wall time regardless
	st, err := def.Build(map[string]any{"destinations": []any{rx.LocalAddr().String()}, "batch": int64(4), "batch_wait": "10ms"}, env)
	if err != nil {
		t.Fatal(err)
	}
	h := stagetest.Start(t, st, env, false)
	s := h.StartStream("live/wait")
	var sent [][]byte
	for i := range 4 {
		b := rtpPacket(t, 11, uint16(i), uint32(i), 500)
		sent = append(sent, b)
		h.SendData(s, 0, uint32(i), b)
	}
	parseRTCP(t, read(t, rx))
	for i, want := range sent {
		if got := read(t, rx); !bytes.Equal(got, want) {
			t.Fatalf("datagram %d differs", i)
		}
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	// SR + packets 0-2 fill the first batch of 4; packet 3 waits alone and
	// goes when the wait ends; BYE goes at the end.
	if ss := st.(*Stage); ss.batches != 3 || ss.batched != 6 {
		t.Errorf("%d batches of %d datagrams in all, want 3 of 6", ss.batches, ss.batched)
	}
}

// TestReportAfterPause: media back after a pause (a publisher returning
// within its reconnect_grace, its timestamps continued where they stopped)
// is followed at once by a sender report mapping its timestamp to now, so
// an edge does not date it a pause too early.
func TestReportAfterPause(t *testing.T) {
	rx := listen(t)
	_, h := startSink(t, Config{Destinations: []string{rx.LocalAddr().String()}})
	s := h.StartStream("live/pause")
	const ssrc = 0x5150
	h.SendData(s, 0, 1000, rtpPacket(t, ssrc, 1, 1000, 50))
	parseRTCP(t, read(t, rx)) // the stream's first announcement
	read(t, rx)
	// 3 s of silence: a periodic report carries the RTP time on with
	// the clock.
	h.Clock.Advance(3 * time.Second)
	if sr := parseRTCP(t, read(t, rx)); len(sr.Senders) != 1 || sr.Senders[0].RTPTime != 4000 {
		t.Fatalf("periodic report in the pause %+v, want RTP time 4000", sr.Senders)
	}
	back := rtpPacket(t, ssrc, 2, 1040, 50) // continued: 40 ms after the last
	h.SendData(s, 0, 1040, back)
	if got := read(t, rx); !bytes.Equal(got, back) {
		t.Fatalf("the returning packet differs")
	}
	sr := parseRTCP(t, read(t, rx))
	if len(sr.Senders) != 1 || sr.Senders[0].RTPTime != 1040 || !announce.NTPTime(sr.Senders[0].NTP).Equal(h.Clock.Now()) {
		t.Fatalf("report after the pause %+v, want RTP time 1040 at now", sr.Senders)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
}
