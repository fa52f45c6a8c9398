package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/announce"
	"github.com/mediapipe/mediapipe/core/media/repairwire"
	"github.com/mediapipe/mediapipe/core/media/rtpflv"
	"github.com/mediapipe/mediapipe/core/media/rtpheader"
	"github.com/mediapipe/mediapipe/host"
	"github.com/mediapipe/mediapipe/internal/metricread"
	"github.com/mediapipe/mediapipe/internal/relaytoml"
	"github.com/mediapipe/mediapipe/internal/repair"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
	"github.com/mediapipe/mediapipe/stages/rtpfragmenter"
)

// cloudOnly is one cloud pipeline and a plain UDP socket standing in for
// the edges, reading what the cloud puts on the wire.
type cloudOnly struct {
	rtmp, rtx string
	run       *testrun.Running
	wire      *wire
}

// startCloud runs the cloud pipeline of pipeline.example.toml with the
// given rtmp-source publish_key and quic-retransmit token (empty: none).
func startCloud(t *testing.T, publishKey, token string) *cloudOnly {
	t.Helper()
	testmedia.NeedFFmpeg(t)
	if testing.Short() {
		t.Skip("pushes real media")
	}
	w := listenWire(t)
	c := &cloudOnly{rtmp: testrun.FreeTCP(t), rtx: testrun.FreeUDP(t), wire: w}
	toml := relaytoml.Relay{RTMP: c.rtmp, RTX: c.rtx, UDP: w.conn.LocalAddr().String()}.Cloud()
	if publishKey != "" {
		toml = withParam(toml, "rtmp-source", "publish_key", publishKey)
	}
	if token != "" {
		toml = withParam(toml, "quic-retransmit", "token", token)
	}
	c.run = testrun.Start(t, "cloud.toml", toml, nil)
	return c
}

func (c *cloudOnly) url(path string) string { return "rtmp://" + c.rtmp + "/" + path }

// gauge reads the gauge the cloud stage names name.
func (c *cloudOnly) gauge(stage, name string) float64 {
	fams, err := c.run.RT.Metrics.Registry.Gather()
	if err != nil {
		return -1
	}
	return metricread.SumFamilies(fams, core.StageGaugeFamily(stage, name), map[string]string{"stage": stage})
}

func (c *cloudOnly) drops(labels map[string]string) float64 {
	return c.run.RT.CounterSum("mediapipe_stage_drops_total", labels)
}

// wire reads the cloud's UDP output: RTCP announcements and RTP, each
// SSRC's packets (byte for byte) and the FLV tags they reassemble to; a
// datagram outside the contract (neither RTP nor RTCP, RTP before SDES, a
// payload type other than the default) fails the next wait.
type wire struct {
	conn *net.UDPConn

	mu      sync.Mutex
	names   map[uint32]string // SSRC → name, from SDES
	byes    map[uint32]bool
	pkts    map[uint32]map[uint16][]byte
	count   map[uint32]int
	tags    map[uint32][][]byte
	reasm   map[uint32]*rtpflv.Reassembler
	problem error // the first datagram that broke the contract
}

// fragmenterDefault is the default of one rtp-fragmenter parameter, read from
// the stage's spec so the test follows the one place the number is written.
func fragmenterDefault(name string) int {
	for _, p := range core.ParamsOf(rtpfragmenter.Config{}) {
		if p.Name == name {
			n, _ := strconv.Atoi(p.Default)
			return n
		}
	}
	panic("rtp-fragmenter has no parameter " + name)
}

func listenWire(t *testing.T) *wire {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadBuffer(8 << 20) // a 1.3 MB keyframe leaves in one burst
	w := &wire{conn: conn, names: map[uint32]string{}, byes: map[uint32]bool{},
		pkts: map[uint32]map[uint16][]byte{}, count: map[uint32]int{}, tags: map[uint32][][]byte{},
		reasm: map[uint32]*rtpflv.Reassembler{}}
	done := make(chan struct{})
	go w.read(done)
	t.Cleanup(func() {
		_ = conn.Close()
		<-done
	})
	return w
}

func (w *wire) read(done chan struct{}) {
	defer close(done)
	buf := make([]byte, 70000)
	var report announce.Report
	for {
		n, err := w.conn.Read(buf)
		if err != nil {
			return
		}
		pkt := buf[:n]
		w.mu.Lock()
		switch announce.Classify(pkt) {
		case announce.RTCP:
			if err := announce.Parse(pkt, &report); err != nil {
				w.fail(fmt.Errorf("RTCP that does not parse: %w", err))
				break
			}
			for _, nm := range report.Names {
				if nm.Name != "" {
					w.names[nm.SSRC] = nm.Name
				}
			}
			for _, b := range report.Byes {
				w.byes[b] = true
			}
		case announce.RTP:
			ssrc := rtpheader.SSRC(pkt)
			if _, ok := w.names[ssrc]; !ok {
				w.fail(fmt.Errorf("RTP of SSRC %#x before an SDES named it", ssrc))
			}
			if pt := rtpheader.PayloadType(pkt); int(pt) != fragmenterDefault("payload_type") {
				w.fail(fmt.Errorf("payload type %d, want %d", pt, fragmenterDefault("payload_type")))
			}
			if w.pkts[ssrc] == nil {
				w.pkts[ssrc] = map[uint16][]byte{}
				w.reasm[ssrc] = &rtpflv.Reassembler{}
			}
			w.pkts[ssrc][rtpheader.Seq(pkt)] = bytes.Clone(pkt)
			w.count[ssrc]++
			if tag := w.reasm[ssrc].Push(pkt); tag != nil {
				w.tags[ssrc] = append(w.tags[ssrc], bytes.Clone(tag))
			}
		default:
			w.fail(errors.New("a datagram that is neither RTP nor RTCP"))
		}
		w.mu.Unlock()
	}
}

func (w *wire) fail(err error) {
	if w.problem == nil {
		w.problem = err
	}
}

// waitFor polls cond (called under the wire's lock) until it holds.
func (w *wire) waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		w.mu.Lock()
		ok, problem := cond(), w.problem
		w.mu.Unlock()
		if problem != nil {
			t.Fatalf("the cloud broke the wire contract: %v", problem)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ended waits until name's stream was announced and said BYE, and returns
// its SSRC and the tags its RTP reassembled to.
func (w *wire) ended(t *testing.T, name string, within time.Duration) (uint32, [][]byte) {
	t.Helper()
	var ssrc uint32
	w.waitFor(t, "BYE of "+name, within, func() bool {
		for s, n := range w.names {
			if n == name && w.byes[s] {
				ssrc = s
				return true
			}
		}
		return false
	})
	time.Sleep(50 * time.Millisecond) // the BYE follows the stream's last RTP; let the reader settle
	w.mu.Lock()
	defer w.mu.Unlock()
	return ssrc, slices.Clone(w.tags[ssrc])
}

func sameMedia(t *testing.T, who string, got, want [][]byte) {
	t.Helper()
	g, wm := testmedia.MediaTags(got), testmedia.MediaTags(want)
	if len(g) != len(wm) {
		t.Fatalf("%s: %d media tags on the wire, ffmpeg pushed %d", who, len(g), len(wm))
	}
	for i := range g {
		if !bytes.Equal(g[i], wm[i]) {
			t.Fatalf("%s: media tag %d on the wire differs from the clip's", who, i)
		}
	}
}

// Two publishers at once: each is its own stream (own SSRC, own SDES
// name), and each one's tags leave byte-identical to what its ffmpeg sent.
func TestCloudTwoPublishers(t *testing.T) {
	c := startCloud(t, "", "")
	clip := testmedia.Clip(t, testmedia.Options{})
	want := testmedia.Tags(t, clip)
	a := testmedia.Push(t, context.Background(), clip, c.url("live/one"), true)
	b := testmedia.Push(t, context.Background(), clip, c.url("other/two"), true)
	for _, p := range []*exec.Cmd{a, b} {
		if err := p.Wait(); err != nil {
			t.Fatalf("push: %v\n%s", err, testmedia.Stderr(p))
		}
	}
	sa, tagsA := c.wire.ended(t, "live/one", 10*time.Second)
	sb, tagsB := c.wire.ended(t, "other/two", 10*time.Second)
	if sa == sb {
		t.Fatalf("both streams on SSRC %#x", sa)
	}
	sameMedia(t, "live/one", tagsA, want)
	sameMedia(t, "other/two", tagsB, want)
}

// A publisher killed mid-stream (SIGKILL, no RTMP goodbye): its stream ends
// on the wire (RTCP BYE) and every stage frees its state for it.
func TestCloudPublisherKilled(t *testing.T) {
	c := startCloud(t, "", "")
	clip := testmedia.Clip(t, clipOpts)
	push := testmedia.Push(t, context.Background(), clip, c.url("live/killed"), true)
	c.wire.waitFor(t, "RTP of live/killed", 10*time.Second, func() bool {
		for s, n := range c.wire.names {
			if n == "live/killed" && c.wire.count[s] >= 100 {
				return true
			}
		}
		return false
	})
	for _, st := range []string{"rtmp-source", "rtp-fragmenter", "udp-sink"} {
		if v := c.gauge(st, "streams"); v != 1 {
			t.Fatalf("%s streams gauge %v while live, want 1", st, v)
		}
	}
	if err := syscall.Kill(push.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = push.Wait()
	c.wire.ended(t, "live/killed", 10*time.Second)
	for _, st := range []string{"rtmp-source", "rtp-fragmenter", "udp-sink"} {
		if v := c.gauge(st, "streams"); v != 0 {
			t.Errorf("%s still holds %v streams after the publisher died", st, v)
		}
	}
	if live := c.run.RT.Pipelines[0].Streams(); len(live) != 0 {
		t.Errorf("status still lists %v", live)
	}
	// The repair cache answers a while after the end, then is freed.
	deadline := time.Now().Add(10 * time.Second)
	for c.gauge("quic-retransmit", "cached_streams") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("quic-retransmit still caches %v streams 10 s after the end", c.gauge("quic-retransmit", "cached_streams"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// With a publish_key, a publisher without it or with a wrong one is refused
// (ffmpeg fails, nothing reaches the wire); the right one is relayed, named
// without the key.
func TestCloudPublishKey(t *testing.T) {
	c := startCloud(t, "s3cret-key", "")
	clip := testmedia.Clip(t, testmedia.Options{Seconds: 2})
	want := testmedia.Tags(t, clip)
	for _, path := range []string{"live/k", "live/k?key=wrong"} {
		p := testmedia.Push(t, context.Background(), clip, c.url(path), false)
		if err := p.Wait(); err == nil {
			t.Fatalf("%s: published without the right key", path)
		}
	}
	if n := c.drops(map[string]string{"stage": "rtmp-source", "reason": "publish_refused"}); n != 2 {
		t.Fatalf("publish_refused = %v, want 2", n)
	}
	c.wire.mu.Lock()
	nothing := len(c.wire.names) == 0 && len(c.wire.count) == 0
	c.wire.mu.Unlock()
	if !nothing {
		t.Fatal("a refused publisher reached the wire")
	}
	p := testmedia.Push(t, context.Background(), clip, c.url("live/k?key=s3cret-key"), false)
	if err := p.Wait(); err != nil {
		t.Fatalf("right key refused: %v\n%s", err, testmedia.Stderr(p))
	}
	_, tags := c.wire.ended(t, "live/k", 10*time.Second)
	sameMedia(t, "live/k", tags, want)
}

// A repair request for packets seen on the wire returns the same bytes to
// an edge with the token; an edge without it, or with a wrong one, gets
// nothing at all.
func TestCloudRepairFromWire(t *testing.T) {
	const token = "edge-token"
	c := startCloud(t, "", token)
	clip := testmedia.Clip(t, clipOpts)
	testmedia.Push(t, context.Background(), clip, c.url("live/rep"), true)
	var ssrc uint32
	var seqs []uint16
	wanted := map[uint16][]byte{}
	c.wire.waitFor(t, "300 RTP packets of live/rep", 10*time.Second, func() bool {
		for s, n := range c.wire.names {
			if n == "live/rep" && c.wire.count[s] >= 300 {
				ssrc = s
				// Every 7th packet seen, fragments of keyframes included.
				for seq, pkt := range c.wire.pkts[s] {
					if seq%7 == 0 && len(seqs) < 40 {
						seqs = append(seqs, seq)
						wanted[seq] = pkt
					}
				}
				return true
			}
		}
		return false
	})

	type got struct {
		mu   sync.Mutex
		pkts map[uint16][]byte
		gone []uint16
	}
	dial := func(tok string, g *got) *repair.Client {
		cl, err := repair.Dial(repair.ClientConfig{
			Addr: c.rtx, Token: tok,
			OnRepair: func(s uint32, seq uint16, pkt []byte) {
				g.mu.Lock()
				if s == ssrc {
					g.pkts[seq] = bytes.Clone(pkt)
				}
				g.mu.Unlock()
			},
			OnGone: func(_ uint32, s []uint16) {
				g.mu.Lock()
				g.gone = append(g.gone, s...)
				g.mu.Unlock()
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cl.Close() })
		return cl
	}

	// Without the token, and with a wrong one: refused, nothing comes back.
	var strangers []*got
	for _, tok := range []string{"", "not-the-token"} {
		g := &got{pkts: map[uint16][]byte{}}
		strangers = append(strangers, g)
		cl := dial(tok, g)
		deadline := time.Now().Add(5 * time.Second)
		for !errors.Is(cl.LastError(), repair.ErrUnauthorized) {
			if time.Now().After(deadline) {
				t.Fatalf("token %q: not refused (last error %v)", tok, cl.LastError())
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := cl.Nack(ssrc, slices.Clone(seqs)); err == nil {
			t.Fatalf("token %q: a NACK went out on a refused connection", tok)
		}
		if _, err := cl.Streams(ctxFor(t, 300*time.Millisecond)); err == nil {
			t.Fatalf("token %q: got the stream list", tok)
		}
	}

	g := &got{pkts: map[uint16][]byte{}}
	cl := dial(token, g)
	ctx := ctxFor(t, 5*time.Second)
	if err := cl.WaitConnected(ctx); err != nil {
		t.Fatalf("edge with the token: %v (last error %v)", err, cl.LastError())
	}
	list, err := cl.Streams(ctx)
	if err != nil || !slices.Contains(list, repairwire.StreamInfo{SSRC: ssrc, Name: "live/rep"}) {
		t.Fatalf("stream list %v, %v; want live/rep on %#x", list, err, ssrc)
	}
	if err := cl.Nack(ssrc, slices.Clone(seqs)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		g.mu.Lock()
		n, gone := len(g.pkts), slices.Clone(g.gone)
		g.mu.Unlock()
		if n == len(seqs) {
			break
		}
		if len(gone) > 0 || time.Now().After(deadline) {
			t.Fatalf("%d of %d repaired, gone %v", n, len(seqs), gone)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for seq, want := range wanted {
		if !bytes.Equal(g.pkts[seq], want) {
			t.Fatalf("seq %d: repair differs from the packet on the wire", seq)
		}
	}
	for _, s := range strangers {
		s.mu.Lock()
		n := len(s.pkts) + len(s.gone)
		s.mu.Unlock()
		if n != 0 {
			t.Fatalf("a peer without the token got %d answers", n)
		}
	}
	if n := c.drops(map[string]string{"stage": "quic-retransmit", "reason": "auth_failed"}); n < 2 {
		t.Errorf("auth_failed = %v, want ≥ 2", n)
	}
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// noiseClip makes a 1280x720 clip of random luma: every frame is a tag of
// about 1.3 MB, more fragments than the queue in front of quic-retransmit
// holds (host.DefaultQueue).
func noiseClip(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "noise.flv")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", "nullsrc=s=1280x720:r=10,geq=random(1)*255:128:128",
		"-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=44100",
		"-t", "2", "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-pix_fmt", "yuv420p", "-g", "10", "-bf", "0",
		"-c:a", "aac", "-b:a", "64k", "-ac", "1", "-f", "flv", path).CombinedOutput()
	if err != nil {
		t.Fatalf("making the noise clip: %v\n%s", err, out)
	}
	return path
}

// Tags bigger than the queue between rtp-fragmenter and quic-retransmit
// cross the cloud whole: no fragment (each already has its sequence
// number) is dropped before the repair cache sees it, and every tag leaves
// byte-identical.
func TestCloudBigKeyframes(t *testing.T) {
	c := startCloud(t, "", "")
	clip := noiseClip(t)
	want := testmedia.Tags(t, clip)
	biggest := 0
	for _, tag := range want {
		biggest = max(biggest, len(tag))
	}
	maxPayload := fragmenterDefault("max_payload")
	if frags := (biggest + maxPayload - 1) / maxPayload; frags <= host.DefaultQueue {
		t.Fatalf("largest tag %d B is only %d fragments: the clip does not exercise the queue", biggest, frags)
	}
	p := testmedia.Push(t, context.Background(), clip, c.url("live/noise"), true)
	if err := p.Wait(); err != nil {
		t.Fatalf("push: %v\n%s", err, testmedia.Stderr(p))
	}
	_, tags := c.wire.ended(t, "live/noise", 20*time.Second)
	if n := c.drops(map[string]string{"reason": "queue_full"}); n != 0 {
		t.Errorf("queue_full drops %v (quic-retransmit %v): fragments lost before the cache", n,
			c.drops(map[string]string{"stage": "quic-retransmit", "reason": "queue_full"}))
	}
	sameMedia(t, "live/noise", tags, want)
}
