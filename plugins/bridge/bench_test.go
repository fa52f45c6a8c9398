package bridge

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/plugins/examples/stream-filter/filter"
)

// packetSize is one RTP-sized FLV tag, as a relay carries them.
const packetSize = 1200

// latencyRate is the paced rate the latency is measured at (packets/s),
// sent in bursts every millisecond, like many streams' worth of a relay.
const latencyRate = 20000

// benchOut counts data packets and, while recording, their latency since
// Ingest.
type benchOut struct {
	mu     sync.Mutex
	n      int
	target int
	done   chan struct{}
	record bool
	lat    []time.Duration
}

func (o *benchOut) Emit(p *core.Packet) {
	if p.Event == core.EventData {
		now := time.Now().UnixNano()
		o.mu.Lock()
		o.n++
		if o.record {
			o.lat = append(o.lat, time.Duration(now-p.Ingest))
		}
		if o.n == o.target {
			close(o.done)
		}
		o.mu.Unlock()
	}
	p.Release()
}

// expect arms the output to signal when n more data packets arrived.
func (o *benchOut) expect(n int, record bool) <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.target = o.n + n
	o.done = make(chan struct{})
	o.record = record
	o.lat = o.lat[:0]
	return o.done
}

func BenchmarkStreamFilter(b *testing.B) {
	udp := udpRate(b)
	for _, impl := range []string{"builtin", "plugin"} {
		for _, batch := range []int{1, 8, 32} {
			if impl == "builtin" && batch > 1 {
				continue // nothing to batch in-process
			}
			name := impl
			if impl == "plugin" {
				name = fmt.Sprintf("plugin/batch=%d", batch)
			}
			b.Run(name, func(b *testing.B) {
				var def core.Definition
				if impl == "builtin" {
					def = core.Define(filter.Spec, filter.New)
				} else {
					var err error
					if def, err = LoadWith(bin(b, "stream-filter"), Options{MaxBatch: batch}); err != nil {
						b.Fatal(err)
					}
				}
				benchStage(b, def, udp)
			})
		}
	}
}

// benchRig is a stage built, opened and running on one stream, fed by the
// benchmark through in and counted by out.
type benchRig struct {
	in   chan *core.Packet
	out  *benchOut
	s    *core.Stream
	ran  chan error
	stop context.CancelFunc
	tag  []byte // the FLV tag every packet carries
}

func startRig(b *testing.B, def core.Definition, name string, params map[string]any, tagSize int) *benchRig {
	st, err := def.Build(params, core.TestEnv(name))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if o, ok := st.(core.Opener); ok {
		if err := o.Open(ctx); err != nil {
			cancel()
			b.Fatal(err)
		}
	}
	r := &benchRig{in: make(chan *core.Packet, 1024), out: &benchOut{}, s: core.NewStream("live/bench"),
		ran: make(chan error, 1), stop: cancel, tag: flv.AppendTag(nil, flv.TypeVideo, 0, make([]byte, tagSize-flv.HeaderSize))}
	go func() { r.ran <- st.Run(ctx, r.in, r.out) }()
	r.in <- core.NewEvent(core.EventStart, r.s)
	return r
}

func (r *benchRig) send() {
	p := core.NewPacket(len(r.tag))
	copy(p.Data, r.tag)
	p.Stream, p.Type, p.Ingest = r.s, flv.TypeVideo, time.Now().UnixNano()
	r.in <- p
}

// throughput sends b.N packets as fast as the stage takes them and reports
// packets/s.
func (r *benchRig) throughput(b *testing.B) float64 {
	b.ReportAllocs()
	b.SetBytes(int64(len(r.tag)))
	done := r.out.expect(b.N, false)
	b.ResetTimer()
	for range b.N {
		r.send()
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		b.Fatalf("only %d of %d packets came through", r.out.n, b.N)
	}
	b.StopTimer()
	pps := float64(b.N) / b.Elapsed().Seconds()
	b.ReportMetric(pps, "pkts/s")
	return pps
}

// finish ends the stream and waits for the stage's Run.
func (r *benchRig) finish(b *testing.B) {
	defer r.stop()
	r.in <- core.NewEvent(core.EventEnd, r.s)
	close(r.in)
	if err := <-r.ran; err != nil {
		b.Fatal(err)
	}
}

func benchStage(b *testing.B, def core.Definition, udp float64) {
	r := startRig(b, def, "stream-filter", map[string]any{"drop_audio": true}, packetSize)
	b.ReportMetric(r.throughput(b)/udp, "x-WriteToUDP")

	// Latency: paced, so it measures the stage rather than a queue.
	const n = latencyRate / 2
	done := r.out.expect(n, true)
	tick := time.NewTicker(time.Millisecond)
	for sent := 0; sent < n; {
		<-tick.C
		for range latencyRate / 1000 {
			r.send()
			sent++
		}
	}
	tick.Stop()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		b.Fatalf("latency phase: packets missing")
	}
	r.out.mu.Lock()
	lat := slices.Clone(r.out.lat)
	r.out.mu.Unlock()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	r.finish(b)
}

var (
	udpOnce sync.Once
	udpPPS  float64
)

// udpRate measures a plain WriteToUDP loop of 1200-byte datagrams on
// loopback, the yardstick a plugin stage is held against.
func udpRate(b *testing.B) float64 {
	udpOnce.Do(func() {
		const n = 200000
		d := writeToUDP(b, n)
		udpPPS = n / d.Seconds()
	})
	return udpPPS
}

func writeToUDP(b *testing.B, n int) time.Duration {
	dst, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer dst.Close()
	src, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	to := dst.LocalAddr().(*net.UDPAddr)
	buf := make([]byte, packetSize)
	start := time.Now()
	for range n {
		if _, err := src.WriteToUDP(buf, to); err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start)
}

// BenchmarkWriteToUDP is the yardstick on its own.
func BenchmarkWriteToUDP(b *testing.B) {
	b.SetBytes(packetSize)
	b.ReportAllocs()
	d := writeToUDP(b, b.N)
	b.ReportMetric(float64(b.N)/d.Seconds(), "pkts/s")
}
