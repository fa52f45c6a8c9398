package udpsink

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/net/ipv4"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/stagetest"
)

// The receivers below are bound but never read: the kernel drops what
// overflows their queue, so the figures measure the sending side only.
// Compare BenchmarkSink's pkts/s with BenchmarkWriteToUDP's (same file,
// same 1200-byte datagrams, loopback):
//
//	go test -run '^$' -bench 'Sink|WriteToUDP|RawWriteBatch|RawGSO' -benchtime 200000x -count 5 -benchmem ./stages/udpsink

func discardingReceiver(b *testing.B) *net.UDPConn {
	b.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

// BenchmarkSink puts 1200-byte RTP packets through udp-sink's Run: channel,
// batch gathering, sendmmsg.
func BenchmarkSink(b *testing.B) {
	for _, c := range []struct {
		batch int
		wait  time.Duration
		gso   bool
	}{{1, 0, false}, {64, 0, false}, {64, 200 * time.Microsecond, false}, {64, 0, true}, {64, 200 * time.Microsecond, true}} {
		name := "batch=" + itoa(c.batch) + "/wait=" + c.wait.String() + "/sendmmsg"
		if c.gso {
			name = "batch=" + itoa(c.batch) + "/wait=" + c.wait.String() + "/gso"
		}
		b.Run(name, func(b *testing.B) {
			rx := discardingReceiver(b)
			env := core.TestEnv("udp-sink")
			st := newStage(&Config{Destinations: []string{rx.LocalAddr().String()}, TTL: 1, Batch: c.batch, BatchWait: c.wait, GSO: c.gso, WriteBuffer: 4 << 20, MulticastLoopback: true}, env)
			if err := st.Open(context.Background()); err != nil {
				b.Fatal(err)
			}
			in := make(chan *core.Packet, 1024)
			done := make(chan error, 1)
			go func() { done <- st.Run(context.Background(), in, stagetest.Discard{}) }()
			s := core.NewStream("live/bench")
			in <- core.NewEvent(core.EventStart, s)
			pkt := rtpPacket(b, 1, 0, 0, 1188)
			warmPool(cap(in)+c.batch+64, len(pkt))
			b.SetBytes(int64(len(pkt)))
			drive(b, st, s, in, done, func(int) []byte { return pkt })
		})
	}
}

// BenchmarkSinkMixed puts RTP packets of a relay's mix of sizes through
// udp-sink's Run with the defaults (batch 64, GSO): FLV video tags cut into
// 1200-byte fragments and a shorter last one, with audio tags between, so a
// batch holds many short GSO runs and lone datagrams rather than one run.
func BenchmarkSinkMixed(b *testing.B) {
	rx := discardingReceiver(b)
	env := core.TestEnv("udp-sink")
	st := newStage(&Config{Destinations: []string{rx.LocalAddr().String()}, TTL: 1, Batch: 64, GSO: true, WriteBuffer: 4 << 20, MulticastLoopback: true}, env)
	if err := st.Open(context.Background()); err != nil {
		b.Fatal(err)
	}
	in := make(chan *core.Packet, 1024)
	done := make(chan error, 1)
	go func() { done <- st.Run(context.Background(), in, stagetest.Discard{}) }()
	s := core.NewStream("live/bench")
	in <- core.NewEvent(core.EventStart, s)
	// payload sizes: a 3-fragment video tag, audio, a 4-fragment video tag, audio
	var pkts [][]byte
	for _, n := range []int{1188, 1188, 690, 250, 1188, 1188, 1188, 440, 250} {
		pkts = append(pkts, rtpPacket(b, 1, 0, 0, n))
	}
	warmPool(cap(in)+64+64, 1200)
	drive(b, st, s, in, done, func(i int) []byte { return pkts[i%len(pkts)] })
}

// BenchmarkSinkPaced is BenchmarkSink's default case (batch 64, GSO) with
// the stream paced: at 1 GB/s, above what the sink sends here, every packet
// passes the token bucket at once; at 200 MB/s the stream's queue fills to
// its cap and stays there (pacing holds, the timer releases, overruns go
// at once). Both must stay at 0 allocs/op.
//
//	go test -run '^$' -bench 'SinkPaced' -benchtime 200000x -count 5 -benchmem ./stages/udpsink
func BenchmarkSinkPaced(b *testing.B) {
	for _, pace := range []int{1_000_000_000, 200_000_000} {
		b.Run("pace="+itoa(pace), func(b *testing.B) {
			rx := discardingReceiver(b)
			env := core.TestEnv("udp-sink")
			st := newStage(&Config{Destinations: []string{rx.LocalAddr().String()}, TTL: 1, Batch: 64, GSO: true, WriteBuffer: 4 << 20, MulticastLoopback: true, Pace: pace}, env)
			if err := st.Open(context.Background()); err != nil {
				b.Fatal(err)
			}
			in := make(chan *core.Packet, 1024)
			done := make(chan error, 1)
			go func() { done <- st.Run(context.Background(), in, stagetest.Discard{}) }()
			s := core.NewStream("live/bench")
			in <- core.NewEvent(core.EventStart, s)
			pkt := rtpPacket(b, 1, 0, 0, 1188)
			warmPool(cap(in)+64+paceCapMax/len(pkt)+64, len(pkt))
			b.SetBytes(int64(len(pkt)))
			drive(b, st, s, in, done, func(int) []byte { return pkt })
			b.ReportMetric(float64(counterValueB(b, st.paceHeld))/float64(b.N), "held/pkt")
		})
	}
}

func counterValueB(b *testing.B, c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		b.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// drive sends b.N packets of stream s (the i-th's bytes from next) into the
// running sink st through in, waits for Run's end on done, and reports the
// sink's CPU, rate and batching per packet.
func drive(b *testing.B, st *Stage, s *core.Stream, in chan *core.Packet, done <-chan error, next func(i int) []byte) {
	b.ReportAllocs()
	b.ResetTimer()
	cpu := procCPU()
	for i := 0; i < b.N; i++ {
		pkt := next(i)
		p := core.NewPacket(len(pkt))
		copy(p.Data, pkt)
		p.Stream = s
		in <- p
	}
	close(in)
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(procCPU()-cpu)/float64(b.N), "cpu-ns/pkt")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
	b.ReportMetric(float64(st.batched)/float64(max(st.batches, 1)), "pkts/batch")
	b.ReportMetric(float64(st.sendCalls)/float64(max(st.batched, 1)), "sends/pkt")
}

// rawSender is a raw benchmark's socket: connected to a discarding
// receiver, with the send buffer the sink asks for by default.
func rawSender(b *testing.B) *net.UDPConn {
	rx := discardingReceiver(b)
	c, err := net.DialUDP("udp4", nil, rx.LocalAddr().(*net.UDPAddr))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	_ = c.SetWriteBuffer(4 << 20)
	return c
}

// warmPool puts n packets of size bytes into core's pool, as many as can be
// in flight at once (the queue plus a batch), so the timed loop's
// core.NewPacket reuses them and allocs/op is the sink's own at any
// -benchtime, not the harness filling the pool.
func warmPool(n, size int) {
	ps := make([]*core.Packet, n)
	for i := range ps {
		ps[i] = core.NewPacket(size)
	}
	for _, p := range ps {
		p.Release()
	}
}

// BenchmarkWriteToUDP is the baseline: one WriteToUDP per packet.
func BenchmarkWriteToUDP(b *testing.B) {
	rx := discardingReceiver(b)
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	_ = c.SetWriteBuffer(4 << 20)
	to := rx.LocalAddr().(*net.UDPAddr)
	pkt := rtpPacket(b, 1, 0, 0, 1188)
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		if _, err := c.WriteToUDP(pkt, to); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
}

// BenchmarkRawWriteBatch is the ceiling udp-sink is held to: the same
// datagram sent with ipv4.PacketConn.WriteBatch, 64 per sendmmsg, with no
// pipeline around it (issue 7: the sink should reach ≥ 70 % of it).
func BenchmarkRawWriteBatch(b *testing.B) {
	c := rawSender(b)
	pc := ipv4.NewPacketConn(c)
	pkt := rtpPacket(b, 1, 0, 0, 1188)
	msgs := make([]ipv4.Message, 64)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{pkt}
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	sent := 0
	for sent < b.N {
		batch := msgs[:min(len(msgs), b.N-sent)]
		for len(batch) > 0 {
			n, err := pc.WriteBatch(batch, 0)
			if err != nil {
				b.Fatal(err)
			}
			batch = batch[n:]
			sent += n
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// BenchmarkRawWriteBatchPooled is the raw WriteBatch of 64 again, but each
// datagram is its own pooled packet, filled (copied) just before the batch is
// sent and released after it, as a pipeline's packets are: the kernel copies
// from 64 different buffers instead of one that stays in cache.
func BenchmarkRawWriteBatchPooled(b *testing.B) {
	c := rawSender(b)
	pc := ipv4.NewPacketConn(c)
	pkt := rtpPacket(b, 1, 0, 0, 1188)
	msgs := make([]ipv4.Message, 64)
	for i := range msgs {
		msgs[i].Buffers = make([][]byte, 1)
	}
	pkts := make([]*core.Packet, 64)
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	sent := 0
	for sent < b.N {
		batch := msgs[:min(len(msgs), b.N-sent)]
		for i := range batch {
			p := core.NewPacket(len(pkt))
			copy(p.Data, pkt)
			pkts[i] = p
			batch[i].Buffers[0] = p.Data
		}
		k := len(batch)
		for len(batch) > 0 {
			n, err := pc.WriteBatch(batch, 0)
			if err != nil {
				b.Fatal(err)
			}
			batch = batch[n:]
			sent += n
		}
		for _, p := range pkts[:k] {
			p.Release()
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
}
