package rtmpsource_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/yutopp/go-rtmp"
	"github.com/yutopp/go-rtmp/handshake"
	rtmpmsg "github.com/yutopp/go-rtmp/message"
	"go.uber.org/goleak"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/stagetest"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
	"github.com/mediapipe/mediapipe/stages/flvtagger"
	"github.com/mediapipe/mediapipe/stages/rtmpsource"
)

type source struct {
	h   *stagetest.Harness
	env *core.Env
	url string
}

func startSource(t *testing.T, cfg rtmpsource.Config) *source {
	t.Helper()
	return startSourceEnv(t, cfg, core.TestEnv("rtmp-source"))
}

func startSourceEnv(t *testing.T, cfg rtmpsource.Config, env *core.Env) *source {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 10 * time.Second
	}
	if cfg.MaxMessageSize == 0 {
		cfg.MaxMessageSize = 8 << 20
	}
	st, err := rtmpsource.New(&cfg, env)
	if err != nil {
		t.Fatal(err)
	}
	h := stagetest.Start(t, st, env, true)
	addr := st.(*rtmpsource.Stage).Addr().String()
	return &source{h: h, env: env, url: "rtmp://" + addr}
}

// streamPackets returns the data packets of the stream named name, and
// whether its start and end were both seen.
func streamPackets(all []stagetest.Captured, name string) (data []stagetest.Captured, started, ended bool) {
	for _, p := range all {
		if p.Stream == nil || p.Stream.Name != name {
			continue
		}
		switch p.Event {
		case core.EventStart:
			started = true
		case core.EventEnd:
			ended = true
		default:
			data = append(data, p)
		}
	}
	return
}

func waitEnd(t *testing.T, s *source, name string, timeout time.Duration) []stagetest.Captured {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		data, started, ended := streamPackets(s.h.Out.Packets(), name)
		if ended {
			if !started {
				t.Fatalf("%s: end without start", name)
			}
			return data
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no end event after %v (%d packets so far)", name, timeout, len(data))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tagAll runs captured av packets through a flv-tagger and returns its tags.
func tagAll(t *testing.T, av []stagetest.Captured) ([][]byte, *core.Stream) {
	t.Helper()
	st, _ := flvtagger.New(nil, core.TestEnv("flv-tagger"))
	h := stagetest.Start(t, st, nil, false)
	s := h.StartStream("live/x")
	for _, p := range av {
		h.SendData(s, p.Type, p.Timestamp, p.Data)
	}
	h.EndStream(s)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	var tags [][]byte
	for _, p := range h.Out.Data() {
		tags = append(tags, p.Data)
	}
	return tags, s
}

func compareMedia(t *testing.T, got, want [][]byte) {
	t.Helper()
	got, want = testmedia.MediaTags(got), testmedia.MediaTags(want)
	for i := 0; i < min(len(got), len(want)); i++ {
		if !bytes.Equal(got[i], want[i]) {
			hg, _ := flv.ParseHeader(got[i])
			hw, _ := flv.ParseHeader(want[i])
			t.Fatalf("tag %d differs: got %+v, want %+v", i, hg, hw)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("got %d media tags, the clip has %d", len(got), len(want))
	}
}

func push(t *testing.T, url, clip string, realtime bool) *exec.Cmd {
	t.Helper()
	return testmedia.Push(t, context.Background(), clip, url, realtime)
}

func TestPushIsByteIdentical(t *testing.T) {
	clip := testmedia.Clip(t, testmedia.Options{})
	want := testmedia.Tags(t, clip)
	s := startSource(t, rtmpsource.Config{})
	cmd := push(t, s.url+"/live/movie", clip, false)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, testmedia.Stderr(cmd))
	}
	av := waitEnd(t, s, "live/movie", 5*time.Second)
	tags, st := tagAll(t, av)
	compareMedia(t, tags, want)
	// The last video tag is ffmpeg's AVC end of sequence, as in the clip.
	last := testmedia.MediaTags(tags)
	if v, _ := flv.ParseVideo(last[len(last)-1][flv.HeaderSize:]); v.PacketType != flv.AVCEndOfSequence {
		t.Errorf("last tag is not the AVC end of sequence: %+v", v)
	}
	// onMetaData arrives as a script tag body, @setDataFrame stripped.
	if len(tags) == 0 || tags[0][0] != flv.TypeScript || !flv.IsOnMetaData(tags[0][flv.HeaderSize:]) {
		t.Errorf("first tag is not onMetaData: % x", tags[0][:min(len(tags[0]), 32)])
	}
	init := st.Init()
	if init == nil || init.Metadata == nil || !bytes.Equal(init.Video, want[1]) && !bytes.Equal(init.Video, want[2]) || init.Audio == nil {
		t.Errorf("init tags not kept: %+v", init)
	}
}

func TestTwoPublishers(t *testing.T) {
	clip := testmedia.Clip(t, testmedia.Options{})
	want := testmedia.Tags(t, clip)
	s := startSource(t, rtmpsource.Config{})
	a := push(t, s.url+"/live/a", clip, true)
	b := push(t, s.url+"/other/b", clip, true)
	for _, c := range []*exec.Cmd{a, b} {
		if err := c.Wait(); err != nil {
			t.Fatalf("ffmpeg: %v\n%s", err, testmedia.Stderr(c))
		}
	}
	for _, name := range []string{"live/a", "other/b"} {
		tags, _ := tagAll(t, waitEnd(t, s, name, 5*time.Second))
		compareMedia(t, tags, want)
	}
}

func TestSecondPublisherRefused(t *testing.T) {
	clip := testmedia.Clip(t, testmedia.Options{})
	s := startSource(t, rtmpsource.Config{})
	first := push(t, s.url+"/live/dup", clip, true)
	s.h.Out.WaitData(1, 5*time.Second)
	second := push(t, s.url+"/live/dup", clip, true)
	if err := second.Wait(); err == nil {
		t.Fatalf("second publisher to a live name was accepted")
	}
	_ = first.Process.Kill()
	waitEnd(t, s, "live/dup", 5*time.Second)
}

func TestPublisherKilled(t *testing.T) {
	clip := testmedia.Clip(t, testmedia.Options{})
	s := startSource(t, rtmpsource.Config{})
	cmd := push(t, s.url+"/live/killed", clip, true)
	if got := s.h.Out.WaitData(30, 5*time.Second); len(got) < 30 {
		t.Fatalf("only %d packets before the kill", len(got))
	}
	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	data := waitEnd(t, s, "live/killed", 5*time.Second)
	if len(data) < 30 {
		t.Fatalf("stream ended with %d packets", len(data))
	}
	// The name is free again.
	again := push(t, s.url+"/live/killed?x=1", clip, false)
	if err := again.Wait(); err != nil {
		t.Fatalf("republish after kill: %v\n%s", err, testmedia.Stderr(again))
	}
}

func TestPublishKey(t *testing.T) {
	clip := testmedia.Clip(t, testmedia.Options{Seconds: 1})
	s := startSource(t, rtmpsource.Config{PublishKey: "s3cret"})
	for _, url := range []string{s.url + "/live/k", s.url + "/live/k?key=wrong"} {
		cmd := push(t, url, clip, false)
		if err := cmd.Wait(); err == nil {
			t.Fatalf("%s: publish accepted without the right key", url)
		}
	}
	if n := len(s.h.Out.Packets()); n != 0 {
		t.Fatalf("refused publishers produced %d packets", n)
	}
	cmd := push(t, s.url+"/live/k?key=s3cret", clip, false)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("right key refused: %v\n%s", err, testmedia.Stderr(cmd))
	}
	waitEnd(t, s, "live/k", 5*time.Second)
	if v := s.env.Metrics.Drop("publish_refused").Value(); v != 2 {
		t.Errorf("publish_refused = %v, want 2", v)
	}
}

// TestGarbageDoesNotDisturb throws junk at the port while a stream runs.
func TestGarbageDoesNotDisturb(t *testing.T) {
	clip := testmedia.Clip(t, testmedia.Options{Seconds: 3})
	want := testmedia.Tags(t, clip)
	s := startSource(t, rtmpsource.Config{IdleTimeout: 500 * time.Millisecond, MaxMessageSize: 1 << 20})
	cmd := push(t, s.url+"/live/calm", clip, true)
	s.h.Out.WaitData(1, 5*time.Second)
	addr := s.url[len("rtmp://"):]
	junk := make([]byte, 64<<10)
	for i := 0; i < 5; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = rand.Read(junk)
		_, _ = c.Write(junk)
		_ = c.Close()
	}
	// An oversized message after a good handshake: refused from its header.
	c := handshaken(t, addr)
	hdr := []byte{0x03, 0, 0, 0, 0x10, 0x00, 0x01, 9, 1, 0, 0, 0} // fmt 0, csid 3, a 1 MiB + 1 video message
	_, _ = c.Write(hdr)
	expectClosed(t, c)
	// A silent connection is closed by idle_timeout.
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	expectClosed(t, idle)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, testmedia.Stderr(cmd))
	}
	tags, _ := tagAll(t, waitEnd(t, s, "live/calm", 5*time.Second))
	compareMedia(t, tags, want)
	for _, reason := range []string{"message_too_large", "idle_timeout"} {
		if v := s.env.Metrics.Drop(reason).Value(); v < 1 {
			t.Errorf("%s not counted", reason)
		}
	}
	junkCount := s.env.Metrics.Drop("malformed").Value() + s.env.Metrics.Drop("connection_error").Value() + s.env.Metrics.Drop("idle_timeout").Value() - 1
	if junkCount < 5 {
		t.Errorf("junk connections counted %v, want 5", junkCount)
	}
}

func handshaken(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := handshake.HandshakeWithServer(c, c, &handshake.Config{}); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return c
}

func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("server kept the connection open")
	}
}

func TestShutdownEndsStreams(t *testing.T) {
	clip := testmedia.Clip(t, testmedia.Options{})
	s := startSource(t, rtmpsource.Config{})
	push(t, s.url+"/live/s1", clip, true)
	push(t, s.url+"/live/s2", clip, true)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, a, _ := streamPackets(s.h.Out.Packets(), "live/s1")
		_, b, _ := streamPackets(s.h.Out.Packets(), "live/s2")
		if a && b {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("streams did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := s.h.Close(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"live/s1", "live/s2"} {
		if _, _, ended := streamPackets(s.h.Out.Packets(), name); !ended {
			t.Errorf("%s not ended on shutdown", name)
		}
	}
}

var _ = fmt.Sprintf

func TestMaxPublishers(t *testing.T) {
	clip := testmedia.Clip(t, testmedia.Options{})
	s := startSource(t, rtmpsource.Config{MaxPublishers: 1})
	first := push(t, s.url+"/live/one", clip, true)
	s.h.Out.WaitData(1, 5*time.Second)
	if err := push(t, s.url+"/live/two", clip, false).Wait(); err == nil {
		t.Fatal("a second stream was accepted beyond max_publishers")
	}
	_ = first.Process.Kill()
	waitEnd(t, s, "live/one", 5*time.Second)
}

// TestNoLeaks: after shutdown no goroutine of the server or go-rtmp is left.
func TestNoLeaks(t *testing.T) {
	clip := testmedia.Clip(t, testmedia.Options{Seconds: 1})
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	s := startSource(t, rtmpsource.Config{})
	live := push(t, s.url+"/live/leak", clip, true)
	s.h.Out.WaitData(5, 5*time.Second)
	idle, err := net.Dial("tcp", s.url[len("rtmp://"):])
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if err := s.h.Close(); err != nil {
		t.Fatal(err)
	}
	_ = live.Wait()
	if _, _, ended := streamPackets(s.h.Out.Packets(), "live/leak"); !ended {
		t.Fatal("stream not ended on shutdown")
	}
}

// countingWriter counts the bytes of log written and keeps the first 64 KiB.
type countingWriter struct {
	n    atomic.Int64
	mu   sync.Mutex
	head []byte
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n.Add(int64(len(p)))
	w.mu.Lock()
	if room := 64<<10 - len(w.head); room > 0 {
		w.head = append(w.head, p[:min(room, len(p))]...)
	}
	w.mu.Unlock()
	return len(p), nil
}

// TestRefusalFloodLogBounded reproduces the log amplification of issue 11:
// 400 publish attempts with 65 KB names, no key, used to write each name in
// full (26 MB of log). Now the name is clipped and repeated refusals are one
// summary line per interval; every refusal is still counted.
func TestRefusalFloodLogBounded(t *testing.T) {
	const attempts = 400
	w := &countingWriter{}
	env := core.TestEnv("rtmp-source")
	env.Log = slog.New(slog.NewTextHandler(w, nil))
	env.Metrics.SetLogger(env.Log)
	s := startSourceEnv(t, rtmpsource.Config{PublishKey: "s3cret"}, env)
	addr := s.url[len("rtmp://"):]
	name := strings.Repeat("n", 65000) // AMF0 short string: the longest go-rtmp can send
	// The first, logged in full, guesses a key: the guess must not be logged.
	publishOnce(t, addr, name+"?key=guessedSECRET")
	for i := 1; i < attempts; i++ {
		publishOnce(t, addr, fmt.Sprintf("%d%s", i, name))
	}
	refused := env.Metrics.Drop("publish_refused")
	testrun.Eventually(t, testrun.WaitLimit, "every attempt refused", func() bool { return refused.Value() >= attempts })
	if v := refused.Value(); v != attempts {
		t.Errorf("publish_refused = %v, want %d", v, attempts)
	}
	if n := w.n.Load(); n > 64<<10 {
		t.Fatalf("%d attempts wrote %d bytes of log, want < 64 KiB", attempts, n)
	}
	w.mu.Lock()
	head := string(w.head)
	w.mu.Unlock()
	if strings.Contains(head, "guessedSECRET") {
		t.Errorf("a publish key was logged:\n%.300s", head)
	}
	// The first refusal logged may be any attempt's: the server can close
	// one connection and log after the next attempt's refusal (the rest of
	// the interval is then summed up), so any attempt's name (65005 or
	// 65006-65008 bytes) will do, clipped.
	if !strings.Contains(head, "msg=\"publish refused\"") || !regexp.MustCompile(`…\(6500[5-8] bytes\)`).MatchString(head) {
		t.Errorf("the first refusal is not logged with its clipped name:\n%.500s", head)
	}
}

// publishOnce connects, asks to publish name on app "live" and waits until
// the server has answered or closed the connection.
func publishOnce(t *testing.T, addr, name string) {
	t.Helper()
	cc, err := rtmp.Dial("rtmp", addr, &rtmp.ConnConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if err := cc.Connect(&rtmpmsg.NetConnectionConnect{Command: rtmpmsg.NetConnectionConnectCommand{App: "live"}}); err != nil {
		t.Fatalf("connect: %v", err)
	}
	st, err := cc.CreateStream(&rtmpmsg.NetConnectionCreateStream{}, 128)
	if err != nil {
		t.Fatalf("createStream: %v", err)
	}
	if err := st.Publish(&rtmpmsg.NetStreamPublish{PublishingName: name, PublishingType: "live"}); err != nil {
		t.Fatalf("publish: %v", err)
	}
}
