package e2e

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

type chanOut chan *core.Packet

func (c chanOut) Emit(p *core.Packet) { c <- p }

// keyframeOrdinals maps each framemd5 packet of clip to its keyframe number
// (1 for the first keyframe, ...) or 0 when it is not a keyframe. The
// packets are the clip's media tags in order, less sequence headers and
// end-of-sequence tags.
func keyframeOrdinals(t *testing.T, tags [][]byte, packets int) []int {
	t.Helper()
	var ords []int
	n := 0
	for _, tag := range tags {
		h, _ := flv.ParseHeader(tag)
		body := tag[flv.HeaderSize:]
		if h.Type == flv.TypeScript || flv.InitKindOf(h.Type, body) != flv.InitNone {
			continue
		}
		if v, _ := flv.ParseVideo(body); h.Type == flv.TypeVideo && v.PacketType == flv.AVCEndOfSequence {
			continue
		}
		ord := 0
		if h.Type == flv.TypeVideo && flv.IsVideoKeyframe(body) {
			n++
			ord = n
		}
		ords = append(ords, ord)
	}
	if len(ords) != packets {
		t.Fatalf("the clip has %d media tags but ffmpeg sees %d packets: cannot map packets to GOPs", len(ords), packets)
	}
	return ords
}

// TestRelayFFmpegToFFmpeg: ffmpeg pushes RTMP → rtmp-source → flv-tagger →
// httpflv-sink; one ffmpeg viewer joins at once, one mid-stream. Each gets
// exactly the clip's last N packets, N covering at least its join: from the
// keyframe of the GOP in progress when it joined (the GOP cache) on.
//
// The viewers' ffmpeg processes connect to held proxies before the
// publisher starts, and each proxy lets its viewer in when the test says:
// how long ffmpeg takes to start on a loaded machine changes nothing. Which
// GOP a viewer joined in is read from the sink's keyframe counter around
// its join, not assumed from timing.
func TestRelayFFmpegToFFmpeg(t *testing.T) {
	clip := testmedia.Clip(t, testmedia.Options{})
	tags := testmedia.Tags(t, clip)
	ctx := ctxFor(t, 3*testrun.FFmpegLimit)
	want, stderr, err := testmedia.FrameMD5Err(ctx, clip, "-copyts")
	if err != nil {
		t.Fatalf("framemd5 of the clip: %v\n%s", err, stderr)
	}
	ords := keyframeOrdinals(t, tags, len(want))

	// Each stage with its spec's defaults, as a pipeline file would give them.
	rtmpAddr, sinkAddr, sinkEnv := startRelay(t, nil)
	httpURL := "http://" + sinkAddr + "/live/relay.flv"
	keys := func() int { return int(core.CounterValue(sinkEnv.Metrics.Counter("keyframes"))) }
	served := func() int { return int(core.CounterValue(sinkEnv.Metrics.Counter("viewers_served"))) }

	proxies := make([]*heldProxy, 2)
	results := make([]<-chan testmedia.Viewing, 2)
	for i := range proxies {
		proxies[i] = newHeldProxy(t, sinkAddr)
		results[i] = testmedia.View(t, "http://"+proxies[i].addr+"/live/relay.flv", testrun.FFmpegLimit)
	}
	for i, p := range proxies {
		testrun.Within(t, p.accepted, testrun.WaitLimit, "ffmpeg viewer "+string(rune('0'+i))+" to connect")
	}

	rtmpURL := "rtmp://" + rtmpAddr + "/live/relay"
	pub := testmedia.Push(t, ctx, clip, rtmpURL, true)
	testrun.Eventually(t, testrun.WaitLimit, "stream on the sink", func() bool { return testrun.Head(httpURL) == 200 })

	// joined[i] is the range of keyframes viewer i may have joined after:
	// the sink's keyframe count before its request went in and after the
	// sink took it.
	joined := make([][2]int, 2)
	for i, p := range proxies {
		if i == 1 { // the second viewer joins mid-stream, at the third GOP or later
			testrun.Eventually(t, testrun.WaitLimit, "the third keyframe", func() bool { return keys() >= 3 })
		}
		joined[i][0] = keys()
		p.release()
		testrun.Eventually(t, testrun.WaitLimit, "the sink to take the viewer", func() bool { return served() == i+1 })
		joined[i][1] = keys()
	}
	pubDone := make(chan error, 1)
	go func() { pubDone <- pub.Wait() }()
	if err := testrun.Within(t, pubDone, testrun.FFmpegLimit, "the publisher"); err != nil {
		t.Fatalf("publisher: %v\n%s", err, testmedia.Stderr(pub))
	}
	firstKey := 0
	for firstKey < len(ords) && ords[firstKey] != 1 {
		firstKey++
	}
	for i, ch := range results {
		res := testrun.Within(t, ch, testrun.FFmpegLimit, "ffmpeg viewer")
		if res.Err != nil {
			t.Fatalf("viewer %d: %v\n%s", i, res.Err, res.Stderr)
		}
		got := res.Frames
		if len(got) == 0 || len(got) > len(want) {
			t.Fatalf("viewer %d got %d packets of %d", i, len(got), len(want))
		}
		start := len(want) - len(got)
		tail := want[start:]
		for j := range got {
			if got[j] != tail[j] {
				t.Fatalf("viewer %d packet %d: %v, want %v", i, j, got[j], tail[j])
			}
		}
		lo, hi := joined[i][0], joined[i][1]
		switch {
		case hi == 0:
			// Joined before the first keyframe: everything from there on. The
			// GOP cache starts at the first keyframe, so audio muxed before it
			// may be missing, nothing after.
			if start > firstKey {
				t.Errorf("viewer %d joined before the first keyframe but got only %d of %d packets", i, len(got), len(want))
			}
		default:
			// Joined during GOP k (lo <= k <= hi): the GOP cache gives it
			// exactly the packets from keyframe k on.
			if k := ords[start]; k < max(lo, 1) || k > hi {
				t.Errorf("viewer %d joined after keyframe %d..%d but its %d packets start at packet %d (keyframe %d; 0 = not a keyframe)", i, lo, hi, len(got), start, k)
			}
		}
		if i == 1 && len(got) == len(want) {
			t.Errorf("late viewer got %d of %d packets", len(got), len(want))
		}
		t.Logf("viewer %d: joined after keyframe %d..%d, the clip's last %d of %d packets, identical", i, lo, hi, len(got), len(want))
	}
}

// heldProxy forwards one TCP connection to target, but only after release is
// called: a viewer process can connect early (its start-up time under load
// does not matter) and join the stream exactly when the test says.
type heldProxy struct {
	addr     string
	accepted chan struct{} // closed when the client has connected
	release  func()
}

func newHeldProxy(t testing.TB, target string) *heldProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	released := make(chan struct{})
	p := &heldProxy{addr: ln.Addr().String(), accepted: make(chan struct{})}
	var once sync.Once
	p.release = func() { once.Do(func() { close(released) }) }
	var (
		mu     sync.Mutex
		closed bool
		conns  []net.Conn
		wg     sync.WaitGroup
	)
	keep := func(c net.Conn) bool { // false once the test is over
		mu.Lock()
		defer mu.Unlock()
		if closed {
			c.Close()
			return false
		}
		conns = append(conns, c)
		return true
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		ln.Close()
		if err != nil || !keep(c) {
			return
		}
		close(p.accepted)
		<-released
		up, err := net.DialTimeout("tcp", target, 5*time.Second)
		if err != nil {
			c.Close()
			return
		}
		if !keep(up) {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = io.Copy(up, c)
			_ = up.(*net.TCPConn).CloseWrite()
		}()
		_, _ = io.Copy(c, up)
		c.Close()
	}()
	t.Cleanup(func() {
		mu.Lock()
		closed = true
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		p.release()
		ln.Close()
		wg.Wait() // bounded: every socket is closed
	})
	return p
}
