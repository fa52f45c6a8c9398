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
	return startPacedClock(t, dest, pace, nil)
}

// startPacedClock is startPaced with the announce ticks on clock (nil: the
// real one); pacing itself runs on the wall clock regardless.
func startPacedClock(t *testing.T, dest string, pace int, clock *stagetest.FakeClock) (*Stage, *stagetest.Harness) {
	t.Helper()
	def := core.Define(core.Spec{Name: "udp-sink", In: core.KindRTP}, New)
	env := core.TestEnv("udp-sink")
	if clock != nil {
		env.Clock = clock
	}
	st, err := def.Build(map[string]any{"destinations": []string{dest}, "pace": int64(pace)}, env)
	if err != nil {
		t.Fatal(err)
	}
	h := stagetest.Start(t, st, env, false)
	if clock != nil {
		h.Clock = clock
	}
	return st.(*Stage), h
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
	// firstSR is, by SSRC, how many RTP packets (len(all)) had arrived
	// when its first SR did.
	firstSR map[uint32]int
	srs     int
}

func record(t *testing.T, c *net.UDPConn) *recorder {
	t.Helper()
	r := &recorder{rtp: map[uint32][]arrival{}, firstSR: map[uint32]int{}}
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
					for _, sr := range rep.Senders {
						r.srs++
						if _, ok := r.firstSR[sr.SSRC]; !ok {
							r.firstSR[sr.SSRC] = len(r.all)
						}
					}
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
// shutting down, with packets held send them (before the BYE) at once, not
// at the pace; a queue over its cap sends its oldest at once, counted as
// pace_overrun, never drops.
func TestPaceHeldOnEndAndShutdown(t *testing.T) {
	rx := listen(t)
	const rate = paceFloor // a 64 KiB queue holds a second's worth
	st, h := startPaced(t, rx.LocalAddr().String(), rate)
	rec := record(t, rx)
	ended, open := h.StartStream("live/ends"), h.StartStream("live/open")
	const ssrcEnded, ssrcOpen, n = 0x1111, 0x2222, 100
	var sentE, sentO [][]byte
	start := time.Now()
	for i := range n {
		b := rtpPacket(t, ssrcEnded, uint16(i), uint32(i), burstPayload)
		sentE = append(sentE, b)
		h.SendData(ended, 0, uint32(i), b)
		b = rtpPacket(t, ssrcOpen, uint16(i), uint32(i), burstPayload)
		sentO = append(sentO, b)
		h.SendData(open, 0, uint32(i), b)
	}
	// 100 × 1200 B is far past the 64 KiB cap: the oldest went early as
	// overruns.
	testrun.Eventually(t, testrun.WaitLimit, "overruns counted", func() bool { return counterValue(t, st.paceOverrun) >= 2*30 })
	checkPaced(t, rec.count(ssrcEnded), start, rate, int(counterValue(t, st.paceOverrun)/2))

	atOnce(t, "end", rec, ssrcEnded, sentE, rate, func() { h.EndStream(ended) })
	atOnce(t, "shutdown", rec, ssrcOpen, sentO, rate, func() {
		if err := h.Close(); err != nil {
			t.Fatal(err)
		}
	})
	testrun.Eventually(t, testrun.WaitLimit, "both BYEs", func() bool { rec.mu.Lock(); defer rec.mu.Unlock(); return rec.byes >= 2 })
	if len(st.holding) != 0 {
		t.Fatalf("%d streams still hold packets", len(st.holding))
	}
}

// atOnce runs step, after which what ssrc still holds of sent (held ×
// 1200 B / rate at the pace) must come in well under the pace's time.
func atOnce(t *testing.T, what string, rec *recorder, ssrc uint32, sent [][]byte, rate float64, step func()) {
	t.Helper()
	held := len(sent) - rec.count(ssrc)
	if held < 15 {
		t.Fatalf("%s: only %d packets still held: the machine is too slow to tell", what, held)
	}
	paced := time.Duration(float64(held*(burstPayload+12)) / rate * float64(time.Second))
	begin := time.Now()
	step()
	checkSame(t, rec.wait(t, ssrc, len(sent)), sent)
	if d := time.Since(begin); d > paced*3/4 {
		t.Fatalf("%s: %d held packets took %v, the pace would take %v: they waited for it", what, held, d, paced)
	}
}

// checkPaced fails if more of a burst sent at start arrived than a pace of
// rate allows by now (the bucket's burst at once, the overruns, then the
// pace), with a packet's slack: a bound that grows with the time taken, so
// a slow machine does not fail it.
func checkPaced(t *testing.T, got int, start time.Time, rate float64, overruns int) {
	t.Helper()
	allowed := paceBurstMin/(burstPayload+12) + overruns + int(time.Since(start).Seconds()*rate/(burstPayload+12)) + 2
	if got > allowed {
		t.Fatalf("%d packets arrived %v after the burst; pace %v B/s allows %d", got, time.Since(start), rate, allowed)
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
	sent := [][]byte{rtpPacket(t, 0x33, 0, 0, burstPayload)}
	h.SendData(s, 0, 0, sent[0])
	rec.wait(t, 0x33, 1)
	if err := st.Reconfigure(&Config{Destinations: []string{dest}, TTL: 1, MulticastLoopback: true, Batch: 64, GSO: true, WriteBuffer: 4194304, Pace: paceFloor}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := 1; i <= 50; i++ { // 60 kB: under the 64 KiB cap, a second at the pace
		b := rtpPacket(t, 0x33, uint16(i), uint32(i), burstPayload)
		sent = append(sent, b)
		h.SendData(s, 0, uint32(i), b)
	}
	// The bucket lets 6000 B go: 5 packets, then one every 19 ms.
	testrun.Eventually(t, testrun.WaitLimit, "the first burst", func() bool { return rec.count(0x33) >= 6 })
	checkPaced(t, rec.count(0x33)-1, start, paceFloor, 0)
	b := rtpPacket(t, 0x33, 51, 51, burstPayload)
	sent = append(sent, b)
	atOnce(t, "unpaced", rec, 0x33, sent, paceFloor, func() {
		st.SetPace(s, 0)
		h.SendData(s, 0, 51, b) // takes the new pace up
	})
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

// The 1 s announce tick does not push held packets later: ticking far more
// often than a burst is earned (a fake clock advanced every few ms), the
// held packets still go at the pace. (The tick measured the wait from the
// clock of the last packet and re-armed the timer that much later each
// time: held packets went only once the ticks stopped.)
func TestPaceAnnounceTick(t *testing.T) {
	rx := listen(t)
	clock := stagetest.NewFakeClock(time.Unix(1_700_000_000, 0))
	_, h := startPacedClock(t, rx.LocalAddr().String(), paceFloor, clock)
	rec := record(t, rx)
	s := h.StartStream("live/ticks")
	const ssrc, n = 0x4444, 40 // 48 kB: held, no overrun; 0.7 s at the pace
	var sent [][]byte
	for i := range n {
		b := rtpPacket(t, ssrc, uint16(i), uint32(i), burstPayload)
		sent = append(sent, b)
		h.SendData(s, 0, uint32(i), b)
	}
	rec.wait(t, ssrc, 5) // the bucket's burst
	srs := func() int { rec.mu.Lock(); defer rec.mu.Unlock(); return rec.srs }
	before := srs()
	testrun.Eventually(t, 5*time.Second, "every held packet, ticking", func() bool {
		clock.Advance(time.Second)
		return rec.count(ssrc) >= n
	})
	if ticks := srs() - before; ticks < 5 {
		t.Fatalf("%d announce ticks while the packets were held: the test ticked too little to tell", ticks)
	}
	checkSame(t, rec.wait(t, ssrc, n), sent)
	h.EndStream(s)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
}

// A new SSRC on a paced stream (a publisher restarted): the old SSRC's
// held packets go before the SR+SDES announcing the new one, which an edge
// takes as the old one's end.
func TestPaceSSRCChange(t *testing.T) {
	rx := listen(t)
	_, h := startPaced(t, rx.LocalAddr().String(), paceFloor)
	rec := record(t, rx)
	s := h.StartStream("live/restart")
	const oldSSRC, newSSRC, n = 0x5555, 0x6666, 40
	for i := range n {
		h.SendData(s, 0, uint32(i), rtpPacket(t, oldSSRC, uint16(i), uint32(i), burstPayload))
	}
	rec.wait(t, oldSSRC, 5)
	if got := rec.count(oldSSRC); got > n-15 {
		t.Fatalf("%d of %d packets went before the change: too few held to tell", got, n)
	}
	h.SendData(s, 0, 0, rtpPacket(t, newSSRC, 0, 0, burstPayload))
	rec.wait(t, newSSRC, 1)
	rec.wait(t, oldSSRC, n)
	rec.mu.Lock()
	at, ok := rec.firstSR[newSSRC]
	lastOld := 0
	for i, x := range rec.all {
		if x == oldSSRC {
			lastOld = i + 1
		}
	}
	rec.mu.Unlock()
	if !ok || at < lastOld {
		t.Fatalf("the new SSRC's SR came after %d RTP packets, the old SSRC's last is packet %d (SR seen: %v)", at, lastOld, ok)
	}
	h.EndStream(s)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
}

// A pace below the floor (here 1e-9 B/s, whose wait once overflowed a
// Duration and woke the timer every 50 µs) is applied as the floor: the
// stream is carried, not held until it overruns; a stream's measured rate
// raises its pace too. The timer's wait stays within bounds whatever the
// rate.
func TestPaceFloor(t *testing.T) {
	rx := listen(t)
	st, h := startPaced(t, rx.LocalAddr().String(), 0)
	rec := record(t, rx)
	s := h.StartStream("live/slow")
	const ssrc, n = 0x7777, 30 // 36 kB: under the cap, half a second at the floor
	var sent [][]byte
	send := func(i int) {
		b := rtpPacket(t, ssrc, uint16(i), uint32(i), burstPayload)
		sent = append(sent, b)
		h.SendData(s, 0, uint32(i), b)
	}
	send(0)
	rec.wait(t, ssrc, 1)
	st.SetPace(s, 1e-9)
	start := time.Now()
	for i := 1; i < n; i++ {
		send(i)
	}
	checkSame(t, rec.wait(t, ssrc, n), sent)
	if d, atFloor := time.Since(start), time.Duration(float64((n-5)*(burstPayload+12))/paceFloor*float64(time.Second)); d < atFloor*8/10 {
		t.Fatalf("%d packets went in %v: not paced (the floor takes %v)", n, d, atFloor)
	}
	if o := counterValue(t, st.paceOverrun); o != 0 {
		t.Fatalf("%v overruns: the stream was held beyond its cap", o)
	}
	h.EndStream(s)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}

	var pc pacer
	pc.setRate(1e-9)
	if pc.rate != paceFloor {
		t.Fatalf("pace 1e-9 applied as %v, want the floor %v", pc.rate, float64(paceFloor))
	}
	pc.measured = 300_000
	pc.apply()
	if pc.rate != 300_000 {
		t.Fatalf("pace %v under a measured 300000 B/s", pc.rate)
	}
	pc.setRate(0)
	if pc.rate != 0 {
		t.Fatalf("pace 0 applied as %v, want none", pc.rate)
	}
	now := time.Now()
	for _, c := range []struct {
		rate float64
		want time.Duration
	}{
		{1e-12, paceMaxWait}, // 6000 B would take 190 000 years: not a negative Duration
		{1e-3, paceMaxWait},
		{paceFloor, 93750 * time.Microsecond},
		{1e12, paceMinWait},
	} {
		pc := pacer{rate: c.rate, burst: paceBurstMin, held: 64 << 10, last: now}
		if w := pc.wait(now); w < c.want-time.Microsecond || w > c.want+time.Microsecond {
			t.Fatalf("rate %v: timer wait %v, want %v", c.rate, w, c.want)
		}
	}

	// measurePace: what passed over the last interval, per second.
	ms := &Stage{streams: map[*core.Stream]*streamState{}}
	ss := &streamState{}
	ss.pc.setRate(paceFloor)
	ms.streams[core.NewStream("live/measured")] = ss
	ms.wall = now
	ms.measurePace() // the first call starts the interval
	ss.pc.in = 500_000
	ms.wall = now.Add(2 * time.Second)
	ms.measurePace()
	if ss.pc.measured != 250_000 || ss.pc.rate != 250_000 || ss.pc.in != 0 {
		t.Fatalf("measured %v B/s, pace %v, %d bytes left; want 250000, 250000, 0", ss.pc.measured, ss.pc.rate, ss.pc.in)
	}
}
