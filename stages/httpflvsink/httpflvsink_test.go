package httpflvsink_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/stagetest"
	"github.com/mediapipe/mediapipe/internal/testcert"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
	"github.com/mediapipe/mediapipe/stages/flvtagger"
	"github.com/mediapipe/mediapipe/stages/httpflvsink"
)

type sink struct {
	stage core.Stage
	h     *stagetest.Harness
	env   *core.Env
	base  string
	nsync int
}

func startSink(t testing.TB, cfg httpflvsink.Config) *sink {
	t.Helper()
	// Zero sizes and timeouts take the spec's defaults; a zero
	// flush_interval (each tag at once) and a false gop_cache stay as given.
	var def httpflvsink.Config
	stagetest.Decode(t, "httpflv-sink", map[string]any{"listen": "127.0.0.1:0"}, &def)
	cfg.Listen = def.Listen
	if cfg.ViewerQueue == 0 {
		cfg.ViewerQueue = def.ViewerQueue
	}
	if cfg.GOPMaxBytes == 0 {
		cfg.GOPMaxBytes = def.GOPMaxBytes
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = def.WriteTimeout
	}
	if cfg.FlushBytes == 0 {
		cfg.FlushBytes = def.FlushBytes
	}
	env := core.TestEnv("httpflv-sink")
	st, err := httpflvsink.New(&cfg, env)
	if err != nil {
		t.Fatal(err)
	}
	h := stagetest.Start(t, st, env, false)
	return &sink{stage: st, h: h, env: env, base: "http://" + st.(*httpflvsink.Stage).Addr().String()}
}

func (s *sink) send(st *core.Stream, tag []byte) {
	hdr, _ := flv.ParseHeader(tag)
	s.h.SendData(st, hdr.Type, hdr.Timestamp, tag)
}

// sync returns once Run has handled everything sent before: it starts a
// stream of its own and waits until the sink serves it (Run takes its input
// in order).
func (s *sink) sync(t testing.TB) {
	t.Helper()
	s.nsync++
	name := fmt.Sprintf("sync/%d", s.nsync)
	s.h.StartStream(name)
	testrun.Eventually(t, testrun.WaitLimit, "the sink to catch up", func() bool { return testrun.Head(s.base+"/"+name+".flv") == 200 })
}

func (s *sink) viewers() float64 { return core.GaugeValue(s.env.Metrics.Gauge("viewers")) }

func sameTags(t *testing.T, got, want [][]byte) {
	t.Helper()
	for i := 0; i < min(len(got), len(want)); i++ {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("tag %d differs (got %d bytes, want %d)", i, len(got[i]), len(want[i]))
		}
	}
	if len(got) != len(want) {
		t.Fatalf("got %d tags, want %d", len(got), len(want))
	}
}

// TestWholeStream: a viewer from the start gets every tag, byte for byte, and
// its response ends when the stream does.
// flushModes are the coalescing settings every delivery test runs with.
var flushModes = []struct {
	name     string
	interval time.Duration
	bytes    int
}{
	{"each_tag", 0, 32 << 10},
	{"default", 10 * time.Millisecond, 32 << 10},
	{"slow_tick", 200 * time.Millisecond, 4 << 10},
}

func TestWholeStream(t *testing.T) {
	tags := testmedia.Tags(t, testmedia.Clip(t, testmedia.Options{}))
	for _, m := range flushModes {
		t.Run(m.name, func(t *testing.T) {
			s := startSink(t, httpflvsink.Config{GOPCache: true, FlushInterval: m.interval, FlushBytes: m.bytes})
			st := s.h.StartStream("live/whole")
			testrun.Eventually(t, testrun.WaitLimit, "stream", func() bool { return testrun.Head(s.base+"/live/whole.flv") == 200 })
			resp, err := httpc.Get(s.base + "/live/whole.flv")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if ct, cors := resp.Header.Get("Content-Type"), resp.Header.Get("Access-Control-Allow-Origin"); resp.StatusCode != 200 || ct != "video/x-flv" || cors != "*" {
				t.Fatalf("status %d, content type %q, CORS %q", resp.StatusCode, ct, cors)
			}
			for _, tag := range tags {
				s.send(st, tag)
			}
			s.h.EndStream(st)
			got, err := flv.ReadAll(bufio.NewReader(resp.Body))
			if err != nil {
				t.Fatalf("reading the body: %v", err)
			}
			sameTags(t, got, tags)
			testrun.Eventually(t, testrun.WaitLimit, "viewer gone", func() bool { return s.viewers() == 0 })
			if code := testrun.Head(s.base + "/live/whole.flv"); code != 404 {
				t.Errorf("ended stream: status %d, want 404", code)
			}
		})
	}
}

// TestLateJoinFFmpeg: ffmpeg joins mid-stream; its packets must be exactly
// the clip's last N packets, N covering everything from the last keyframe.
func TestLateJoinFFmpeg(t *testing.T) {
	clip := testmedia.Clip(t, testmedia.Options{})
	tags := testmedia.Tags(t, clip)
	want, stderr, err := testmedia.FrameMD5Err(testCtx(t, testrun.FFmpegLimit), clip, "-copyts")
	if err != nil {
		t.Fatalf("framemd5 of the clip: %v\n%s", err, stderr)
	}
	for _, gop := range []bool{true, false} {
		t.Run(fmt.Sprintf("gop_cache=%v", gop), func(t *testing.T) {
			s := startSink(t, httpflvsink.Config{GOPCache: gop})
			st := s.h.StartStream("live/late")
			split := len(tags) * 3 / 5 // mid-GOP
			for _, tag := range tags[:split] {
				s.send(st, tag)
			}
			s.sync(t) // the viewer must join at tag split, not before
			done := testmedia.View(t, s.base+"/live/late.flv", testrun.FFmpegLimit)
			testrun.Eventually(t, testrun.WaitLimit, "ffmpeg to join", func() bool { return s.viewers() == 1 })
			for _, tag := range tags[split:] {
				s.send(st, tag)
			}
			s.h.EndStream(st)
			res := testrun.Within(t, done, testrun.FFmpegLimit, "ffmpeg viewer")
			if res.Err != nil {
				t.Fatalf("ffmpeg: %v\n%s", res.Err, res.Stderr)
			}
			// The response's end is the stream's: ffmpeg must see a clean
			// end, not "Stream ends prematurely ... Input/output error".
			if e := strings.TrimSpace(res.Stderr); e != "" {
				t.Errorf("ffmpeg complained at the stream's end:\n%s", e)
			}
			got := res.Frames
			if len(got) == 0 || len(got) > len(want) {
				t.Fatalf("viewer got %d packets of %d", len(got), len(want))
			}
			tail := want[len(want)-len(got):]
			for i := range got {
				if got[i].Size != tail[i].Size || got[i].Hash != tail[i].Hash || got[i].PTS != tail[i].PTS {
					t.Fatalf("packet %d of %d: got %v, want %v", i, len(got), got[i], tail[i])
				}
			}
			// The join was at tag `split`; every packet from there on arrived,
			// and with the GOP cache also the GOP in progress.
			afterJoin := 0
			for _, tag := range tags[split:] {
				if h, _ := flv.ParseHeader(tag); h.Type != flv.TypeScript && flv.InitKindOf(h.Type, tag[11:]) == flv.InitNone {
					if v, _ := flv.ParseVideo(tag[11:]); h.Type == flv.TypeVideo && v.PacketType == flv.AVCEndOfSequence {
						continue
					}
					afterJoin++
				}
			}
			if gop && len(got) <= afterJoin {
				t.Fatalf("with the GOP cache the viewer got %d packets, only %d from the join on", len(got), afterJoin)
			}
			if !gop && len(got) >= afterJoin {
				t.Fatalf("without the GOP cache the viewer should start at the next keyframe: %d packets, %d after join", len(got), afterJoin)
			}
			if got[0].Stream != tail[0].Stream {
				t.Logf("note: stream indexes differ (%d vs %d)", got[0].Stream, tail[0].Stream)
			}
			t.Logf("viewer got the clip's last %d of %d packets (%d sent after it joined)", len(got), len(want), afterJoin)
		})
	}
}

// TestStalledViewerShed: a client that never reads is disconnected, and
// counted as slow_viewer, while another viewer of the same stream gets every
// tag. With the default queue (1024 tags) write_timeout cuts it before its
// queue fills; with a short queue the overflow does.
func TestStalledViewerShed(t *testing.T) {
	for _, c := range []struct {
		name    string
		queue   int
		timeout time.Duration
	}{
		{"queue_full", 64, 10 * time.Second},
		{"write_timeout", 1024, time.Second},
	} {
		for _, m := range flushModes {
			t.Run(c.name+"/"+m.name, func(t *testing.T) { testStalledViewerShed(t, c.queue, c.timeout, m.interval, m.bytes) })
		}
	}
}

func testStalledViewerShed(t *testing.T, queue int, timeout, interval time.Duration, flushBytes int) {
	s := startSink(t, httpflvsink.Config{GOPCache: true, ViewerQueue: queue, WriteTimeout: timeout, FlushInterval: interval, FlushBytes: flushBytes})
	st := s.h.StartStream("live/stall")
	s.sync(t)
	addr := s.base[len("http://"):]
	stalled, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	if tc, ok := stalled.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	fmt.Fprintf(stalled, "GET /live/stall.flv HTTP/1.1\r\nHost: x\r\n\r\n")
	testrun.Eventually(t, testrun.WaitLimit, "stalled viewer", func() bool { return s.viewers() == 1 })

	s.shedBesideGoodViewer(t, st, httpc, 600)
	if n := s.env.Metrics.Drop("slow_viewer").Value(); n != 1 {
		t.Errorf("slow_viewer = %v, want 1", n)
	}
}

// shedBesideGoodViewer plays stream st (live/stall, with one stalled viewer
// already on it) to a good viewer through client while n 64 KiB tags are
// sent, paced to the good viewer only, and checks that the stalled viewer is
// shed while the good one gets every tag and stays to the end.
func (s *sink) shedBesideGoodViewer(t *testing.T, st *core.Stream, client *http.Client, n int) {
	t.Helper()
	resp, err := client.Get(s.base + "/live/stall.flv")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got atomic.Int64
	readDone := make(chan [][]byte, 1)
	go func() {
		fr := flv.NewReader(bufio.NewReader(resp.Body))
		var tags [][]byte
		for {
			tag, err := fr.Next()
			if err != nil {
				readDone <- tags
				return
			}
			tags = append(tags, tag)
			got.Add(1)
		}
	}()
	var sent [][]byte
	body := bytes.Repeat([]byte{0x27, 1, 0, 0, 0}, 64<<10/5)
	for i := 0; i < n; i++ {
		b := append([]byte(nil), body...)
		b[5] = byte(i)
		if i%30 == 0 {
			b[0] = 0x17
		}
		tag := flv.AppendTag(nil, flv.TypeVideo, uint32(i*33), b)
		sent = append(sent, tag)
		s.send(st, tag)
		if i%32 == 31 { // pace to the good reader, never to the stalled one
			testrun.Eventually(t, testrun.WaitLimit, "good viewer", func() bool { return got.Load() >= int64(i-8) })
		}
	}
	testrun.Eventually(t, testrun.WaitLimit, "stalled viewer shed", func() bool { return s.env.Metrics.Drop("slow_viewer").Value() == 1 })
	testrun.Eventually(t, testrun.WaitLimit, "stalled viewer gone", func() bool { return s.viewers() == 1 })
	s.h.EndStream(st)
	sameTags(t, testrun.Within(t, readDone, testrun.WaitLimit, "the good viewer's response to end"), sent)
	if n := s.env.Metrics.Drop("viewer_gone").Value(); n != 0 {
		t.Errorf("viewer_gone = %v, want 0: the good viewer stayed to the end", n)
	}
}

// TestViewerGoneCounted: a viewer that hangs up mid-stream is noticed at the
// next write and counted as viewer_gone, not as a slow viewer.
func TestViewerGoneCounted(t *testing.T) {
	for _, m := range flushModes {
		t.Run(m.name, func(t *testing.T) {
			s := startSink(t, httpflvsink.Config{GOPCache: true, FlushInterval: m.interval, FlushBytes: m.bytes})
			st := s.h.StartStream("live/gone")
			s.sync(t)
			c, err := net.DialTimeout("tcp", s.base[len("http://"):], 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(c, "GET /live/gone.flv HTTP/1.1\r\nHost: x\r\n\r\n")
			_ = c.SetReadDeadline(time.Now().Add(testrun.WaitLimit))
			if _, err := io.ReadFull(c, make([]byte, 16)); err != nil {
				t.Fatalf("reading the response: %v", err)
			}
			c.Close()
			body := bytes.Repeat([]byte{0xaf, 1}, 512)
			deadline := time.Now().Add(testrun.WaitLimit)
			for i := 0; s.env.Metrics.Drop("viewer_gone").Value() == 0; i++ {
				if time.Now().After(deadline) {
					t.Fatal("a viewer that hung up was never counted as viewer_gone")
				}
				s.send(st, flv.AppendTag(nil, flv.TypeAudio, uint32(i), body))
				time.Sleep(2 * time.Millisecond)
			}
			testrun.Eventually(t, testrun.WaitLimit, "the viewer to leave", func() bool { return s.viewers() == 0 })
			s.h.EndStream(st)
			if n := s.env.Metrics.Drop("viewer_gone").Value(); n != 1 {
				t.Errorf("viewer_gone = %v, want 1", n)
			}
			if n := s.env.Metrics.Drop("slow_viewer").Value(); n != 0 {
				t.Errorf("slow_viewer = %v, want 0", n)
			}
		})
	}
}

func TestHTTPErrors(t *testing.T) {
	s := startSink(t, httpflvsink.Config{GOPCache: true, PlayKey: "pk"})
	s.h.StartStream("live/here")
	testrun.Eventually(t, testrun.WaitLimit, "stream", func() bool { return testrun.Head(s.base+"/live/here.flv?key=pk") == 200 })
	cases := []struct {
		method, path string
		want         int
	}{
		{"GET", "/live/missing.flv?key=pk", 404},
		{"GET", "/live/here.flv", 401},
		{"GET", "/live/here.flv?key=nope", 403},
		{"GET", "/live/here?key=pk", 404},
		{"GET", "/here.flv?key=pk", 404},
		{"GET", "/live/../here.flv?key=pk", 404},
		{"GET", "//here.flv?key=pk", 404},
		{"GET", "/", 404},
		{"POST", "/live/here.flv?key=pk", 405},
		{"OPTIONS", "/live/here.flv", 204},
		{"HEAD", "/live/here.flv?key=pk", 200},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, s.base+c.path, nil)
		resp, err := httpc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", c.method, c.path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("%s %s: %d (CORS %q), want %d", c.method, c.path, resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"), c.want)
		}
	}
	// junk on the port does not hurt
	if c, err := net.DialTimeout("tcp", s.base[len("http://"):], 5*time.Second); err == nil {
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.Write(bytes.Repeat([]byte{0xff, 0, '\n'}, 1000))
		c.Close()
	}
	if r, err := httpc.Get(s.base + "/live/here.flv?key=pk"); err != nil || r.StatusCode != 200 {
		t.Fatalf("after junk: %v %v", r, err)
	} else {
		r.Body.Close()
	}
}

// TestInitFromStream: an edge that joined late has no in-band sequence
// headers; they come from Stream.Init.
func TestInitFromStream(t *testing.T) {
	tags := testmedia.Tags(t, testmedia.Clip(t, testmedia.Options{}))
	var keyAt int
	st := core.NewStream("live/edge")
	for i, tag := range tags {
		h, _ := flv.ParseHeader(tag)
		flvtagger.SetInitTag(st, flv.InitKindOf(h.Type, tag[11:]), tag)
		if h.Type == flv.TypeVideo && flv.IsVideoKeyframe(tag[11:]) && i > len(tags)/2 && keyAt == 0 {
			keyAt = i
		}
	}
	init := st.Init()
	s := startSink(t, httpflvsink.Config{GOPCache: true})
	s.h.Send(core.NewEvent(core.EventStart, st))
	testrun.Eventually(t, testrun.WaitLimit, "stream", func() bool { return testrun.Head(s.base+"/live/edge.flv") == 200 })
	resp, err := httpc.Get(s.base + "/live/edge.flv")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// The edge joined mid-GOP: the tags before the keyframe (an inter frame
	// among them) reach the sink after the viewer. The stream's init says it
	// has video, so the viewer starts at the keyframe, not at an inter
	// frame it cannot decode (a late edge's viewer did, now and then).
	from := keyAt - 1
	for h, _ := flv.ParseHeader(tags[from]); h.Type != flv.TypeVideo; h, _ = flv.ParseHeader(tags[from]) {
		from--
	}
	for _, tag := range tags[from:] {
		s.send(st, tag)
	}
	s.h.EndStream(st)
	got, err := flv.ReadAll(bufio.NewReader(resp.Body))
	if err != nil {
		t.Fatal(err)
	}
	want := append([][]byte{init.Metadata, init.Video, init.Audio}, tags[keyAt:]...)
	sameTags(t, got, want)
}

// TestViewerBeforeInit: an edge that joined a stream mid-way learns its
// init tags a repair round trip after its first packet. A viewer arriving
// in between waits for them and starts at a keyframe with the init tags
// first, rather than getting media no player can decode (the e2e reload
// test caught that once).
func TestViewerBeforeInit(t *testing.T) {
	tags := testmedia.Tags(t, testmedia.Clip(t, testmedia.Options{}))
	full := core.NewStream("x")
	keyAt := 0
	for i, tag := range tags {
		h, _ := flv.ParseHeader(tag)
		flvtagger.SetInitTag(full, flv.InitKindOf(h.Type, tag[11:]), tag)
		if h.Type == flv.TypeVideo && flv.IsVideoKeyframe(tag[11:]) && i > len(tags)/2 && keyAt == 0 {
			keyAt = i
		}
	}
	init := full.Init()
	s := startSink(t, httpflvsink.Config{GOPCache: true})
	st := core.NewStream("live/late")
	s.h.Send(core.NewEvent(core.EventStart, st))
	testrun.Eventually(t, testrun.WaitLimit, "stream", func() bool { return testrun.Head(s.base+"/live/late.flv") == 200 })
	type result struct {
		tags [][]byte
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := httpc.Get(s.base + "/live/late.flv")
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		tags, err := flv.ReadAll(bufio.NewReader(resp.Body))
		got <- result{tags, err}
	}()
	// Audio and an inter frame arrive before the init does; the viewer
	// (already waiting) must not start on them.
	from := keyAt - 1
	for h, _ := flv.ParseHeader(tags[from]); h.Type != flv.TypeVideo; h, _ = flv.ParseHeader(tags[from]) {
		from--
	}
	from--
	for _, tag := range tags[from : from+2] {
		s.send(st, tag)
	}
	s.sync(t)
	time.Sleep(50 * time.Millisecond) // the viewer's request is in and waiting
	st.SetInit(init)
	testrun.Eventually(t, testrun.WaitLimit, "the viewer to join", func() bool { return s.viewers() == 1 })
	for _, tag := range tags[from+2:] {
		s.send(st, tag)
	}
	s.h.EndStream(st)
	var r result
	select {
	case r = <-got:
	case <-time.After(testrun.WaitLimit):
		t.Fatal("the viewer's response did not end")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	want := append([][]byte{init.Metadata, init.Video, init.Audio}, tags[keyAt:]...)
	sameTags(t, r.tags, want)
}

// BenchmarkFanout measures delivering one 1 KB tag to N viewers reading
// over loopback: ns and allocations per tag, and per tag delivered.
func BenchmarkFanout(b *testing.B) {
	for _, flush := range []time.Duration{0, 10 * time.Millisecond} {
		for _, n := range []int{1, 10, 100, 1000} {
			b.Run(fmt.Sprintf("flush=%v/viewers=%d", flush, n), func(b *testing.B) { benchFanout(b, flush, n, nil) })
		}
	}
}

// benchFanout runs BenchmarkFanout's case; with pair, over HTTPS.
func benchFanout(b *testing.B, flush time.Duration, n int, pair *testcert.Pair) {
	cfg := httpflvsink.Config{GOPCache: false, ViewerQueue: 1 << 16, FlushInterval: flush}
	var s *sink
	client := http.DefaultClient
	if pair != nil {
		ts := startTLSSink(b, cfg, *pair)
		s, client = ts.sink, ts.client
	} else {
		s = startSink(b, cfg)
	}
	st := s.h.StartStream("live/bench")
	testrun.Eventually(b, testrun.WaitLimit, "the stream", func() bool {
		resp, err := client.Head(s.base + "/live/bench.flv")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	var total atomic.Int64
	done := make(chan struct{}, n)
	for i := 0; i < n; i++ {
		resp, err := client.Get(s.base + "/live/bench.flv") // body ends with the stream
		if err != nil {
			b.Fatal(err)
		}
		go func() {
			c, _ := io.Copy(io.Discard, resp.Body)
			total.Add(c)
			resp.Body.Close()
			done <- struct{}{}
		}()
	}
	tag := flv.AppendTag(nil, flv.TypeAudio, 0, bytes.Repeat([]byte{0xaf, 1}, 512))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p := core.NewPacket(len(tag))
		copy(p.Data, tag)
		p.Stream, p.Type = st, flv.TypeAudio
		s.h.Send(p)
		if i%4096 == 4095 { // stay within the viewer queues
			want := float64(i+1) * float64(len(tag)+4) * float64(n)
			deadline := time.Now().Add(testrun.WaitLimit)
			for core.CounterValue(s.env.Metrics.Counter("bytes_sent")) < want {
				if time.Now().After(deadline) {
					b.Fatalf("viewers did not take %d tags within %v", i+1, testrun.WaitLimit)
				}
				time.Sleep(100 * time.Microsecond)
			}
		}
	}
	s.h.EndStream(st)
	for i := 0; i < n; i++ {
		testrun.Within(b, done, testrun.WaitLimit, "viewers to end")
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/delivery")
	if drops := s.env.Metrics.Drop("slow_viewer").Value(); drops > 0 {
		b.Fatalf("%v viewers shed", drops)
	}
}

// TestShutdownKicksViewers: cancelling ctx closes the listener and ends every
// viewer's response even while the input stays open; Run returns once it closes.
func TestShutdownKicksViewers(t *testing.T) {
	env := core.TestEnv("httpflv-sink")
	st, _ := httpflvsink.New(&httpflvsink.Config{Listen: "127.0.0.1:0", ViewerQueue: 64, GOPCache: true, GOPMaxBytes: 1 << 20, WriteTimeout: time.Second}, env)
	ctx, cancel := context.WithCancel(context.Background())
	if err := st.(core.Opener).Open(ctx); err != nil {
		t.Fatal(err)
	}
	in := make(chan *core.Packet, 8)
	done := make(chan error, 1)
	go func() { done <- st.Run(ctx, in, stagetest.Discard{}) }()
	var closeIn sync.Once
	t.Cleanup(func() { // also when the test fails early: Run must not outlive it
		cancel()
		closeIn.Do(func() { close(in) })
		testrun.Within(t, done, testrun.WaitLimit, "Run to return")
	})
	s := core.NewStream("live/bye")
	in <- core.NewEvent(core.EventStart, s)
	url := "http://" + st.(*httpflvsink.Stage).Addr().String() + "/live/bye.flv"
	testrun.Eventually(t, testrun.WaitLimit, "stream", func() bool { return testrun.Head(url) == 200 })
	resp, err := httpc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	ended := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, resp.Body); ended <- err }()
	select {
	case err := <-ended:
		// A stop ends the response cleanly (the last chunk), not by a cut.
		if err != nil {
			t.Errorf("the response was cut, not ended: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("viewer still connected after ctx was cancelled")
	}
	closeIn.Do(func() { close(in) })
	select {
	case err := <-done:
		done <- err // for the cleanup
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its input closed")
	}
}

// TestOutlivesWriteTimeout: a viewer that keeps up is served for longer than
// write_timeout (the flusher's writes must not inherit an old deadline).
func TestOutlivesWriteTimeout(t *testing.T) {
	for _, m := range flushModes {
		t.Run(m.name, func(t *testing.T) {
			s := startSink(t, httpflvsink.Config{GOPCache: true, WriteTimeout: 100 * time.Millisecond, FlushInterval: m.interval, FlushBytes: m.bytes})
			st := s.h.StartStream("live/long")
			testrun.Eventually(t, testrun.WaitLimit, "stream", func() bool { return testrun.Head(s.base+"/live/long.flv") == 200 })
			resp, err := httpc.Get(s.base + "/live/long.flv")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var got atomic.Int64
			readDone := make(chan [][]byte, 1)
			go func() {
				fr := flv.NewReader(bufio.NewReader(resp.Body))
				var tags [][]byte
				for {
					tag, err := fr.Next()
					if err != nil {
						readDone <- tags
						return
					}
					tags = append(tags, tag)
					got.Add(1)
				}
			}()
			var sent [][]byte
			started := time.Now()
			for i := 0; time.Since(started) < 5*100*time.Millisecond; i++ {
				tag := flv.AppendTag(nil, flv.TypeAudio, uint32(i*20), []byte{0xaf, 1, byte(i), byte(i >> 8)})
				sent = append(sent, tag)
				s.send(st, tag)
				testrun.Eventually(t, testrun.WaitLimit, "the viewer to get the tag", func() bool { return got.Load() >= int64(i+1) })
			}
			s.h.EndStream(st)
			sameTags(t, testrun.Within(t, readDone, testrun.WaitLimit, "the response to end"), sent)
			if d := s.env.Metrics.Drop("slow_viewer").Value(); d != 0 {
				t.Errorf("%v viewers shed", d)
			}
		})
	}
}

// TestEndCutsTrickle: when a stream ends, a viewer that reads, but far too
// slowly to take what is queued, is cut within write_timeout: Run's return
// never waits on how fast a viewer reads.
func TestEndCutsTrickle(t *testing.T) {
	const writeTimeout = time.Second
	s := startSink(t, httpflvsink.Config{GOPCache: false, ViewerQueue: 1 << 16, WriteTimeout: writeTimeout, FlushInterval: 10 * time.Millisecond})
	st := s.h.StartStream("live/trickle")
	s.sync(t)
	c, err := net.DialTimeout("tcp", s.base[len("http://"):], 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	fmt.Fprintf(c, "GET /live/trickle.flv HTTP/1.1\r\nHost: x\r\n\r\n")
	testrun.Eventually(t, testrun.WaitLimit, "the viewer", func() bool { return s.viewers() == 1 })
	var read atomic.Int64
	readerDone := make(chan struct{})
	go func() { // about 200 kB/s
		defer close(readerDone)
		buf := make([]byte, 1024)
		for {
			_ = c.SetReadDeadline(time.Now().Add(testrun.WaitLimit))
			n, err := c.Read(buf)
			read.Add(int64(n))
			if err != nil {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	body := bytes.Repeat([]byte{0xaf, 1}, 512)
	const tags = 4000 // 4 MB: some 20 s at the reader's pace
	for i := 0; i < tags; i++ {
		s.send(st, flv.AppendTag(nil, flv.TypeAudio, uint32(i), body))
	}
	s.sync(t)
	s.h.EndStream(st)
	ended := time.Now()
	testrun.Eventually(t, testrun.WaitLimit, "the viewer to be cut", func() bool { return s.viewers() == 0 })
	if took := time.Since(ended); took > writeTimeout+5*time.Second {
		t.Errorf("the viewer left %v after its stream ended; write_timeout is %v", took, writeTimeout)
	}
	testrun.Within(t, readerDone, testrun.WaitLimit, "the response to end")
	if n := read.Load(); n >= int64(tags*(len(body)+flv.HeaderSize+4)) {
		t.Errorf("the slow viewer read all %d bytes: it was not slow enough to test the cut", n)
	}
	// The queue held everything, so write_timeout cut it: counted all the same.
	if d := s.env.Metrics.Drop("slow_viewer").Value(); d != 1 {
		t.Errorf("slow_viewer = %v, want 1: the cut viewer must be counted", d)
	}
}

// rawGet sends a GET for path in HTTP/proto and returns the response head's
// lines and a reader positioned at the body.
func rawGet(t *testing.T, base, path, proto string) ([]string, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", base[len("http://"):], 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(testrun.WaitLimit))
	fmt.Fprintf(c, "GET %s HTTP/%s\r\nHost: x\r\n\r\n", path, proto)
	br := bufio.NewReader(c)
	var head []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the response head: %v", err)
		}
		if line == "\r\n" {
			return head, br
		}
		head = append(head, strings.TrimRight(line, "\r\n"))
	}
}

// readChunks de-chunks a chunked body strictly (RFC 9112 §7.1, no
// extensions or trailers, as the sink sends it) up to the zero-length chunk
// and the connection's end, and counts the chunks.
func readChunks(t *testing.T, br *bufio.Reader) (body []byte, chunks int) {
	t.Helper()
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("after %d chunks: no chunk size line: %v", chunks, err)
		}
		var size int
		if _, err := fmt.Sscanf(line, "%x\r\n", &size); err != nil || fmt.Sprintf("%x\r\n", size) != line {
			t.Fatalf("after %d chunks: bad chunk size line %q", chunks, line)
		}
		data := make([]byte, size+2)
		if _, err := io.ReadFull(br, data); err != nil || string(data[size:]) != "\r\n" {
			t.Fatalf("chunk %d (%d bytes): truncated or no CRLF after it: %v", chunks, size, err)
		}
		if size == 0 {
			if rest, _ := io.ReadAll(br); len(rest) > 0 {
				t.Fatalf("%d bytes after the last chunk", len(rest))
			}
			return body, chunks
		}
		body = append(body, data[:size]...)
		chunks++
	}
}

// TestChunkedEnd: an HTTP/1.1 viewer gets a chunked body that ends with the
// zero-length chunk when the stream ends (players see a clean end, not a
// cut), one chunk per coalesced write rather than per tag, the tags inside
// unchanged. An HTTP/1.0 viewer gets the same bytes, delimited by the close.
func TestChunkedEnd(t *testing.T) {
	tags := testmedia.Tags(t, testmedia.Clip(t, testmedia.Options{}))
	for _, m := range flushModes {
		for _, proto := range []string{"1.1", "1.0"} {
			t.Run(m.name+"/HTTP_"+proto, func(t *testing.T) {
				s := startSink(t, httpflvsink.Config{GOPCache: true, FlushInterval: m.interval, FlushBytes: m.bytes})
				st := s.h.StartStream("live/chunk")
				s.sync(t)
				head, br := rawGet(t, s.base, "/live/chunk.flv", proto)
				if head[0] != "HTTP/1.1 200 OK" {
					t.Fatalf("status line %q", head[0])
				}
				chunked := false
				for _, h := range head[1:] {
					if k, v, _ := strings.Cut(h, ": "); strings.EqualFold(k, "Transfer-Encoding") {
						chunked = v == "chunked"
					} else if strings.EqualFold(k, "Content-Length") {
						t.Fatalf("a live response with %q", h)
					}
				}
				if want := proto == "1.1"; chunked != want {
					t.Fatalf("HTTP/%s: chunked = %v, want %v; head %q", proto, chunked, want, head)
				}
				testrun.Eventually(t, testrun.WaitLimit, "the viewer", func() bool { return s.viewers() == 1 })
				for _, tag := range tags {
					s.send(st, tag)
				}
				s.h.EndStream(st)
				var body []byte
				chunks := 0
				if chunked {
					body, chunks = readChunks(t, br)
				} else {
					var err error
					if body, err = io.ReadAll(br); err != nil {
						t.Fatalf("reading the body: %v", err)
					}
				}
				got, err := flv.ReadAll(bytes.NewReader(body))
				if err != nil {
					t.Fatalf("the body is not FLV: %v", err)
				}
				sameTags(t, got, tags)
				if chunked && m.interval >= 100*time.Millisecond && chunks > len(tags)/4 {
					t.Errorf("%d chunks for %d tags: the writes were not coalesced", chunks, len(tags))
				}
				t.Logf("%d tags in %d chunks", len(tags), chunks)
			})
		}
	}
}

// slowReader reads at most 1500 bytes at a time, pausing between reads.
type slowReader struct{ r io.Reader }

func (s slowReader) Read(b []byte) (int, error) {
	time.Sleep(200 * time.Microsecond)
	return s.r.Read(b[:min(len(b), 1500)])
}

// TestChunkedSlowReader: a viewer whose socket keeps filling (the flusher's
// writes stop mid-chunk, mid-size-line, mid-tag, and its goroutine takes
// over) still gets a well-formed chunked body holding every tag.
func TestChunkedSlowReader(t *testing.T) {
	for _, m := range flushModes {
		t.Run(m.name, func(t *testing.T) {
			s := startSink(t, httpflvsink.Config{GOPCache: true, ViewerQueue: 1 << 16, WriteTimeout: testrun.WaitLimit, FlushInterval: m.interval, FlushBytes: m.bytes})
			st := s.h.StartStream("live/slow")
			s.sync(t)
			c, err := net.DialTimeout("tcp", s.base[len("http://"):], 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// The 2 MB burst outruns the reader: its socket fills again and again.
			_ = c.SetDeadline(time.Now().Add(testrun.WaitLimit))
			fmt.Fprintf(c, "GET /live/slow.flv HTTP/1.1\r\nHost: x\r\n\r\n")
			br := bufio.NewReaderSize(slowReader{c}, 1500)
			for { // the head
				line, err := br.ReadString('\n')
				if err != nil {
					t.Fatal(err)
				}
				if line == "\r\n" {
					break
				}
			}
			testrun.Eventually(t, testrun.WaitLimit, "the viewer", func() bool { return s.viewers() == 1 })
			var sent [][]byte
			for i := 0; i < 800; i++ {
				body := bytes.Repeat([]byte{0xaf, 1, byte(i)}, 200+i*37%1500) // sizes vary so cuts fall anywhere
				tag := flv.AppendTag(nil, flv.TypeAudio, uint32(i*20), body)
				sent = append(sent, tag)
				s.send(st, tag)
			}
			s.h.EndStream(st)
			body, chunks := readChunks(t, br)
			got, err := flv.ReadAll(bytes.NewReader(body))
			if err != nil {
				t.Fatalf("the body is not FLV: %v", err)
			}
			sameTags(t, got, sent)
			if d := s.env.Metrics.Drop("slow_viewer").Value(); d != 0 {
				t.Errorf("slow_viewer = %v: the reader was slow, never stalled", d)
			}
			t.Logf("%d tags in %d chunks", len(sent), chunks)
		})
	}
}
