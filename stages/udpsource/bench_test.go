package udpsource

import (
	"context"
	"net"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/announce"
	"github.com/mediapipe/mediapipe/core/stagetest"
	"github.com/mediapipe/mediapipe/internal/udpbatch"
)

// countingOutput releases what it gets and counts data packets.
type countingOutput struct{ data, starts atomic.Int64 }

func (c *countingOutput) Emit(p *core.Packet) {
	switch p.Event {
	case core.EventData:
		c.data.Add(1)
	case core.EventStart:
		c.starts.Add(1)
	}
	p.Release()
}

// BenchmarkReceive is udp-source's cost per received 1200-byte RTP packet of
// a named stream: recvmmsg into pooled packets, classify, check, emit.
// Senders stay at most a window ahead so nothing overflows the socket.
//
//	go test -run '^$' -bench Receive -benchtime 300000x ./stages/udpsource
func BenchmarkReceive(b *testing.B) {
	env := core.TestEnv("udp-source")
	var cfg Config
	stagetest.Decode(b, "udp-source", map[string]any{"listen": "127.0.0.1:0"}, &cfg)
	st := newStage(&cfg, env)
	ctx, cancel := context.WithCancel(context.Background())
	if err := st.Open(ctx); err != nil {
		b.Fatal(err)
	}
	out := &countingOutput{}
	done := make(chan error, 1)
	go func() { done <- st.Run(ctx, nil, out) }()

	tx, err := net.DialUDP("udp4", nil, st.Addr().(*net.UDPAddr))
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Close()
	const ssrc = 99
	ann, _ := announce.AppendAnnounce(nil, announce.Sender{SSRC: ssrc}, "bench", "live/bench")
	pkt := rtpPacket(b, 100, ssrc, 0, 0, 1188)
	// A stream starts with its first RTP after the announcement.
	for _, d := range [][]byte{ann, pkt} {
		if _, err := tx.Write(d); err != nil {
			b.Fatal(err)
		}
	}
	for out.data.Load() == 0 {
		runtime.Gosched()
	}
	out.data.Store(0)
	ms := make([]udpbatch.Message, 64)
	for i := range ms {
		ms[i].Buffers = [][]byte{pkt}
	}
	w := udpbatch.NewWriter(tx)
	const window = 1024
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	b.ResetTimer()
	for sent := 0; sent < b.N; {
		for int64(sent)-out.data.Load() > window {
			runtime.Gosched()
		}
		k := min(len(ms), b.N-sent)
		n, err := w.Write(ms[:k])
		if err != nil {
			b.Fatal(err)
		}
		sent += n
	}
	for out.data.Load() < int64(b.N) {
		runtime.Gosched()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}
