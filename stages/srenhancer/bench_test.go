package srenhancer

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/stages/srenhancer/internal/srtest"
)

// timedOutput records when each video frame came out, by timestamp.
type timedOutput struct {
	mu     sync.Mutex
	at     map[uint32]time.Time
	frames int
	ended  chan struct{}
}

func (o *timedOutput) Emit(p *core.Packet) {
	o.mu.Lock()
	if p.Event == core.EventEnd {
		close(o.ended)
	}
	if p.Type == flv.TypeVideo && len(p.Data) > 12 && p.Data[12] == flv.AVCNALU {
		o.at[p.Timestamp] = time.Now()
		o.frames++
	}
	o.mu.Unlock()
	p.Release()
}

func (o *timedOutput) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.frames
}

// benchClip runs tags through a fresh stage once. realtime paces the input
// at the clip's own timestamps; otherwise input is paced only by output
// (at most 45 frames inside), which measures throughput. It returns frames
// per second, the first frame's latency (ffmpeg starting) and the added
// latency per frame over the clip's second half (median, 95th percentile).
func benchClip(b *testing.B, raw map[string]any, tags [][]byte, realtime bool) (fps float64, first, p50, p95 time.Duration) {
	def, _ := core.Default.Lookup("sr-enhancer")
	env := core.TestEnv("sr-enhancer")
	env.Log = srtest.TestLogger(b)
	st, err := def.Build(raw, env)
	if err != nil {
		b.Fatal(err)
	}
	in := make(chan *core.Packet, 1024)
	out := &timedOutput{at: map[uint32]time.Time{}, ended: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- st.Run(context.Background(), in, out) }()
	s := core.NewStream("live/bench")
	in <- core.NewEvent(core.EventStart, s)
	sent := map[uint32]time.Time{}
	start := time.Now()
	frames := 0
	for _, tag := range tags {
		h, _ := flv.ParseHeader(tag)
		if realtime {
			if d := time.Until(start.Add(time.Duration(h.Timestamp) * time.Millisecond)); d > 0 {
				time.Sleep(d)
			}
		}
		if h.Type == flv.TypeVideo && tag[12] == flv.AVCNALU {
			frames++
			for !realtime && frames-out.count() > 45 {
				time.Sleep(time.Millisecond)
			}
			sent[h.Timestamp] = time.Now()
		}
		p := core.NewPacket(len(tag))
		copy(p.Data, tag)
		p.Stream, p.Type, p.Timestamp = s, h.Type, h.Timestamp
		in <- p
	}
	in <- core.NewEvent(core.EventEnd, s)
	<-out.ended
	elapsed := time.Since(start)
	close(in)
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	var lat []time.Duration
	var half, firstTS uint32 = tagsSpan(tags) / 2, ^uint32(0)
	for ts, t0 := range sent {
		t1, ok := out.at[ts]
		if !ok {
			b.Fatalf("frame at %d ms did not come out", ts)
		}
		if ts < firstTS {
			firstTS, first = ts, t1.Sub(t0)
		}
		if ts >= half {
			lat = append(lat, t1.Sub(t0))
		}
	}
	if testing.Verbose() {
		var ts []int
		for t := range sent {
			ts = append(ts, int(t))
		}
		sort.Ints(ts)
		for _, t := range ts {
			b.Logf("frame at %d ms: %v", t, out.at[uint32(t)].Sub(sent[uint32(t)]).Round(time.Millisecond))
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return float64(frames) / elapsed.Seconds(), first, lat[len(lat)/2], lat[len(lat)*95/100]
}

func tagsSpan(tags [][]byte) uint32 {
	h, _ := flv.ParseHeader(tags[len(tags)-1])
	return h.Timestamp
}

// BenchmarkStage: 320×180 → 1280×720 (scale 4), 30 fps, keyframe every 30
// frames, x264 preset veryfast. "throughput" feeds as fast as the stage
// takes it (at most 45 frames inside); "realtime" feeds at 30 fps, as a
// publisher does, so its latency figures are the ones viewers see.
func BenchmarkStage(b *testing.B) {
	tags := testmedia.Tags(b, testmedia.Clip(b, testmedia.Options{Seconds: 10}))
	srv := srtest.StandIn(b, "ok")
	for _, be := range []struct {
		name string
		raw  map[string]any
	}{
		{"builtin", map[string]any{}},
		{"http", map[string]any{"backend": "http", "url": srv.URL}},
	} {
		for _, mode := range []string{"throughput", "realtime"} {
			b.Run(be.name+"/"+mode, func(b *testing.B) {
				var fps float64
				var first, p50, p95 time.Duration
				for b.Loop() {
					fps, first, p50, p95 = benchClip(b, be.raw, tags, mode == "realtime")
				}
				b.ReportMetric(fps, "frames/s")
				b.ReportMetric(float64(first.Microseconds())/1000, "first-ms")
				b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(p95.Microseconds())/1000, "p95-ms")
			})
		}
	}
}
