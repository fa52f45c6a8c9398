package udpsink

import (
	"bytes"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/announce"
	"github.com/mediapipe/mediapipe/core/media/rtpheader"
	"github.com/mediapipe/mediapipe/core/stagetest"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// startPaced starts a udp-sink with the pace param (0: none) on the real
// clock.
func startPaced(t *testing.T, dest string, pace int) (*Stage, *stagetest.Harness) {
	t.Helper()
	def := core.Define(core.Spec{Name: "udp-sink", In: core.KindRTP}, New)
	env := core.TestEnv("udp-sink")
	st, err := def.Build(map[string]any{"destinations": []string{dest}, "pace": int64(pace)}, env)
	if err != nil {
		t.Fatal(err)
	}
	return st.(*Stage), stagetest.Start(t, st, env, false)
}

// arrival is one RTP datagram as a receiver on loopback got it.
type arrival struct {
	at   time.Time
	data []byte
}

// recorder reads every datagram of c, timestamping RTP ones by SSRC.
type recorder struct {
	mu   sync.Mutex
	rtp  map[uint32][]arrival
	byes int
	all  []uint32 // SSRCs in arrival order
}

func record(t *testing.T, c *net.UDPConn) *recorder {
	t.Helper()
	r := &recorder{rtp: map[uint32][]arrival{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 70000)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			now := time.Now()
			b := bytes.Clone(buf[:n])
			r.mu.Lock()
			if announce.Classify(b) == announce.RTP {
				ssrc := rtpheader.SSRC(b)
				r.rtp[ssrc] = append(r.rtp[ssrc], arrival{now, b})
				r.all = append(r.all, ssrc)
			} else {
				var rep announce.Report
				if announce.Parse(b, &rep) == nil {
					r.byes += len(rep.Byes)
				}
			}
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() { _ = c.Close(); <-done })
	return r
}

func (r *recorder) count(ssrc uint32) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.rtp[ssrc])
}

func (r *recorder) wait(t *testing.T, ssrc uint32, n int) []arrival {
	t.Helper()
	testrun.Eventually(t, testrun.WaitLimit, "every packet received", func() bool { return r.count(ssrc) >= n })
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]arrival(nil), r.rtp[ssrc]...)
}

// checkSame fails unless got holds exactly sent's datagrams in order.
func checkSame(t *testing.T, got []arrival, sent [][]byte) {
	t.Helper()
	if len(got) != len(sent) {
		t.Fatalf("received %d packets, want %d", len(got), len(sent))
	}
	for i := range sent {
		if !bytes.Equal(got[i].data, sent[i]) {
			t.Fatalf("packet %d differs or is out of order", i)
		}
	}
}

const (
	burstPackets = 100
	burstPayload = 1188 // 1200-byte datagrams
)

// A keyframe's burst of a paced stream arrives spread at its pace (the
// span no shorter than 80 % of bytes/pace: the bucket's burst goes at
// once), bytes and order unchanged; an unpaced stream's burst sent
// interleaved with it arrives at once, ahead of the paced one's tail. The
// pace is set by the controller's SetPace, after the stream has started.
func TestPaceSpreadsBurst(t *testing.T) {
	rx := listen(t)
	st, h := startPaced(t, rx.LocalAddr().String(), 0)
	rec := record(t, rx)
	const paced, free = 0xaaaa0001, 0xbbbb0002
	sa, sb := h.StartStream("live/paced"), h.StartStream("live/free")
	// One packet each first: both streams are known when the pace is set.
	var sentA, sentB [][]byte
	send := func(s *core.Stream, ssrc uint32, seq int, sent *[][]byte) {
		b := rtpPacket(t, ssrc, uint16(seq), uint32(seq), burstPayload)
		*sent = append(*sent, b)
		h.SendData(s, 0, uint32(seq), b)
	}
	send(sa, paced, 0, &sentA)
	send(sb, free, 0, &sentB)
	rec.wait(t, paced, 1)
	rec.wait(t, free, 1)

	const rate = 1_000_000 // bytes/s: 100 × 1200 B take 120 ms
	st.SetPace(sa, rate)
	st.SetPace(core.NewStream("live/unknown"), rate) // ignored
	for i := 1; i <= burstPackets; i++ {
		send(sa, paced, i, &sentA)
		send(sb, free, i, &sentB)
	}
	gotA := rec.wait(t, paced, burstPackets+1)
	gotB := rec.wait(t, free, burstPackets+1)
	checkSame(t, gotA, sentA)
	checkSame(t, gotB, sentB)

	spanA := gotA[burstPackets].at.Sub(gotA[1].at)
	spanB := gotB[burstPackets].at.Sub(gotB[1].at)
	want := time.Duration(float64(burstPackets*(burstPayload+12)) / rate * float64(time.Second))
	t.Logf("paced burst over %v (bytes/pace %v), unpaced over %v", spanA, want, spanB)
	if spanA < want*8/10 {
		t.Fatalf("paced burst arrived over %v, want at least %v", spanA, want*8/10)
	}
	if spanA > want+5*time.Second {
		t.Fatalf("paced burst took %v: held far too long", spanA)
	}
	// The unpaced stream was not held behind the paced one: all of it came
	// before the paced burst's second half.
	rec.mu.Lock()
	seenA, lastB := 0, 0
	for i, ssrc := range rec.all {
		if ssrc == free {
			lastB = i
		}
	}
	for _, ssrc := range rec.all[:lastB] {
		if ssrc == paced {
			seenA++
		}
	}
	rec.mu.Unlock()
	if seenA > burstPackets/2 {
		t.Fatalf("%d paced packets arrived before the unpaced burst's last: the unpaced stream was held", seenA)
	}
	if n := counterValue(t, st.paceHeld); n < burstPackets/2 {
		t.Fatalf("pace_held %v, want most of the burst", n)
	}
	st.paceMu.Lock()
	pending := len(st.paceNew)
	st.paceMu.Unlock()
	if pending != 0 {
		t.Fatalf("%d paces pending after packets: the unknown stream's kept", pending)
	}
	h.EndStream(sa)
	h.EndStream(sb)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if len(st.streams) != 0 || len(st.holding) != 0 || st.paced != 0 {
		t.Fatalf("state left: %d streams, %d holding, %d paced", len(st.streams), len(st.holding), st.paced)
	}
}

// The pace param paces every stream; a stream ending, and the stage
// shutting down, with packets held send them (before the BYE) and return
// at once, not after the pace would have let them go; a queue over its cap
// sends its oldest at once, counted as pace_overrun, never drops.
func TestPaceHeldOnEndAndShutdown(t *testing.T) {
	rx := listen(t)
	const rate = 10_000 // bytes/s: 60 packets of 1200 B would take 7 s
	st, h := startPaced(t, rx.LocalAddr().String(), rate)
	rec := record(t, rx)
	ended, open := h.StartStream("live/ends"), h.StartStream("live/open")
	const ssrcEnded, ssrcOpen = 0x1111, 0x2222
	var sentE, sentO [][]byte
	for i := range 60 {
		b := rtpPacket(t, ssrcEnded, uint16(i), uint32(i), burstPayload)
		sentE = append(sentE, b)
		h.SendData(ended, 0, uint32(i), b)
		b = rtpPacket(t, ssrcOpen, uint16(i), uint32(i), burstPayload)
		sentO = append(sentO, b)
		h.SendData(open, 0, uint32(i), b)
	}
	// 60 × 1200 B is past the 64 KiB cap: a few went early as overruns.
	testrun.Eventually(t, testrun.WaitLimit, "overruns counted", func() bool { return counterValue(t, st.paceOverrun) >= 2 })
	if n := rec.count(ssrcEnded); n >= 30 {
		t.Fatalf("%d of 60 packets sent at once at 10 kB/s", n)
	}
	start := time.Now()
	h.EndStream(ended)
	checkSame(t, rec.wait(t, ssrcEnded, 60), sentE)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("end and shutdown took %v: held packets waited for their pace", d)
	}
	checkSame(t, rec.wait(t, ssrcOpen, 60), sentO)
	testrun.Eventually(t, testrun.WaitLimit, "both BYEs", func() bool { rec.mu.Lock(); defer rec.mu.Unlock(); return rec.byes >= 2 })
	if len(st.holding) != 0 {
		t.Fatalf("%d streams still hold packets", len(st.holding))
	}
}

// A reload changes the pace param live; SetPace(0) unpaces a stream the
// param paces.
func TestPaceReconfigure(t *testing.T) {
	rx := listen(t)
	dest := rx.LocalAddr().String()
	st, h := startPaced(t, dest, 0)
	rec := record(t, rx)
	s := h.StartStream("live/reload")
	h.SendData(s, 0, 0, rtpPacket(t, 0x33, 0, 0, burstPayload))
	rec.wait(t, 0x33, 1)
	if err := st.Reconfigure(&Config{Destinations: []string{dest}, TTL: 1, MulticastLoopback: true, Batch: 64, GSO: true, WriteBuffer: 4194304, Pace: 10_000}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 20; i++ {
		h.SendData(s, 0, uint32(i), rtpPacket(t, 0x33, uint16(i), uint32(i), burstPayload))
	}
	// The bucket lets 6000 B go: 5 packets, then one every 120 ms.
	testrun.Eventually(t, testrun.WaitLimit, "the first burst", func() bool { return rec.count(0x33) >= 6 })
	if n := rec.count(0x33); n > 10 {
		t.Fatalf("%d of 21 packets went at once after pace = 10000", n)
	}
	st.SetPace(s, 0)
	h.SendData(s, 0, 21, rtpPacket(t, 0x33, 21, 21, burstPayload)) // takes the new pace up
	start := time.Now()
	rec.wait(t, 0x33, 22)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("unpaced stream still held for %v", d)
	}
	h.EndStream(s)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
