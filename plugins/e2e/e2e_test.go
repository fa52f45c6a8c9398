// Package e2e runs a cloud→edge relay with the stream-filter example plugin
// after flv-reassembler while ffmpeg pushes, as a user would set it up.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/host"
	"github.com/mediapipe/mediapipe/internal/relaytoml"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
	"github.com/mediapipe/mediapipe/plugins/bridge"
	_ "github.com/mediapipe/mediapipe/stages/flvreassembler"
	_ "github.com/mediapipe/mediapipe/stages/flvtagger"
	_ "github.com/mediapipe/mediapipe/stages/httpflvsink"
	_ "github.com/mediapipe/mediapipe/stages/quicretransmit"
	_ "github.com/mediapipe/mediapipe/stages/rtmpsource"
	_ "github.com/mediapipe/mediapipe/stages/rtpfragmenter"
	_ "github.com/mediapipe/mediapipe/stages/rtpreorder"
	_ "github.com/mediapipe/mediapipe/stages/udpsink"
	_ "github.com/mediapipe/mediapipe/stages/udpsource"
)

// relay is a running cloud and edge with stream-filter (drop_audio, allow
// live/*) between flv-reassembler and httpflv-sink on the edge.
type relay struct {
	edge     *host.Runtime
	stage    *bridge.Stage
	rtmp     string
	movieURL string // live/movie: allowed
	otherURL string // other/feed: outside allow
	pids     []int  // plugin processes seen; none may outlive the test
}

func startRelay(t *testing.T) *relay {
	t.Helper()
	testmedia.NeedFFmpeg(t)
	dir := t.TempDir()
	buildPlugin(t, dir, "stream-filter")
	rtmp, rtx, udp, httpAddr := testrun.FreeTCP(t), testrun.FreeUDP(t), testrun.FreeUDP(t), testrun.FreeTCP(t)
	r := &relay{
		rtmp:     rtmp,
		movieURL: "http://" + httpAddr + "/live/movie.flv",
		otherURL: "http://" + httpAddr + "/other/feed.flv",
	}
	// Runs after the runtimes stopped (cleanups run last-registered first).
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for _, pid := range r.pids {
			for syscall.Kill(pid, 0) == nil {
				if time.Now().After(deadline) {
					t.Errorf("plugin process %d left behind after shutdown", pid)
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	})
	rl := relaytoml.Relay{RTMP: rtmp, RTX: rtx, UDP: udp, HTTP: httpAddr, Latency: 150 * time.Millisecond, AfterReassembler: `
  [[pipeline.stage]]
  plugin = "./stream-filter"
  drop_audio = true
  allow = ["live/*"]
`}
	r.edge = start(t, "edge.toml", dir, rl.Edge())
	r.stage = pluginStage(t, r.edge)
	r.pids = append(r.pids, r.stage.PID())
	start(t, "cloud.toml", dir, rl.Cloud())
	return r
}

// pushBoth makes a clip of seconds, starts ffmpeg pushing it in real time
// to live/movie and other/feed and waits until live/movie plays. It returns
// the clip's video tags, and wait, which waits for both pushes to finish,
// failing the test if one did not.
func (r *relay) pushBoth(t *testing.T, seconds int) (want [][]byte, wait func()) {
	t.Helper()
	clip := testmedia.Clip(t, testmedia.Options{Seconds: seconds})
	want = videoTags(testmedia.Tags(t, clip))
	streams := []string{"live/movie", "other/feed"}
	pushes := make([]*exec.Cmd, len(streams))
	for i, stream := range streams {
		pushes[i] = testmedia.Push(t, context.Background(), clip, "rtmp://"+r.rtmp+"/"+stream, true)
	}
	testrun.WaitPlayable(t, r.movieURL, 10*time.Second)
	return want, func() {
		t.Helper()
		for i, push := range pushes {
			if err := push.Wait(); err != nil {
				t.Fatalf("ffmpeg push of %s: %v\n%s", streams[i], err, testmedia.Stderr(push))
			}
		}
	}
}

// otherNeverServed waits until other/feed flows into the edge pipeline, so
// the probe means something, then checks for a while that the sink never
// serves it.
func (r *relay) otherNeverServed(t *testing.T, when string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for edgePackets(r.edge, "other/feed") < 30 {
		if time.Now().After(deadline) {
			t.Fatalf("%s: other/feed never reached the edge pipeline: nothing to test", when)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for range 10 {
		if code := status(r.otherURL); code == http.StatusOK {
			t.Fatalf("%s: %s answered 200: a stream outside allow was served", when, r.otherURL)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// edgePackets is how many packets of the live stream name the edge pipeline
// has carried.
func edgePackets(rt *host.Runtime, name string) uint64 {
	var n uint64
	for _, p := range rt.Status() {
		for _, s := range p.Streams {
			if s.Name == name {
				n += s.Packets
			}
		}
	}
	return n
}

func start(t *testing.T, name, dir, toml string) *host.Runtime {
	t.Helper()
	return testrun.Start(t, name, toml, nil, testrun.Dir(dir), testrun.StopWithin(15*time.Second)).RT
}

func pluginStage(t *testing.T, rt *host.Runtime) *bridge.Stage {
	t.Helper()
	for _, p := range rt.Pipelines {
		for _, rs := range p.Stages {
			if st, ok := rs.Stage.(*bridge.Stage); ok {
				return st
			}
		}
	}
	t.Fatal("no plugin stage in the runtime")
	return nil
}

func status(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// videoTags keeps video tags minus the AVC end-of-sequence marker ffmpeg
// writes itself at the end of every FLV it muxes.
func videoTags(tags [][]byte) [][]byte {
	var out [][]byte
	for _, tag := range tags {
		if tag[0]&0x1f != flv.TypeVideo {
			continue
		}
		if len(tag) > flv.HeaderSize+1 && tag[flv.HeaderSize+1] == flv.AVCEndOfSequence {
			continue
		}
		out = append(out, tag)
	}
	return out
}

func isSequenceHeader(tag []byte) bool {
	return len(tag) > flv.HeaderSize+1 && tag[flv.HeaderSize+1] == flv.AVCSequenceHeader
}

// audioTags counts audio tags, and of them the AAC sequence headers.
func audioTags(tags [][]byte) (frames, headers int) {
	for _, tag := range tags {
		if tag[0]&0x1f != flv.TypeAudio {
			continue
		}
		if a, _ := flv.ParseAudio(tag[flv.HeaderSize:]); a.IsSequenceHeader() {
			headers++
		} else {
			frames++
		}
	}
	return frames, headers
}

func describe(tag []byte) string {
	h, _ := flv.ParseHeader(tag)
	return fmt.Sprintf("ts %d, %d bytes", h.Timestamp, h.DataSize)
}

// TestRelayWithStreamFilterPlugin: cloud rtmp-source → flv-tagger →
// rtp-fragmenter → quic-retransmit → udp-sink; edge udp-source → rtp-reorder
// → flv-reassembler → plugin stream-filter (drop_audio, allow live/*) →
// httpflv-sink. ffmpeg pushes live/movie and other/feed. A viewer of
// live/movie gets, from where it joined, every video tag of the clip byte
// for byte, in order, to the end, and no audio; other/feed is never served.
func TestRelayWithStreamFilterPlugin(t *testing.T) {
	r := startRelay(t)
	want, wait := r.pushBoth(t, 6)
	viewer := testrun.Watch(r.movieURL)
	r.otherNeverServed(t, "during the push")

	wait()
	got := viewer.Wait(t, 15*time.Second)

	if frames, headers := audioTags(got); frames+headers > 0 {
		t.Errorf("the viewer got %d audio frames and %d audio sequence headers with drop_audio", frames, headers)
	}
	video := videoTags(got)
	// The response starts with the stream's AVC sequence header, then the
	// cached GOP from a keyframe on, then live.
	for len(video) > 0 && isSequenceHeader(video[0]) {
		video = video[1:]
	}
	if len(video) == 0 {
		t.Fatal("the viewer got no video")
	}
	join := -1
	for j := range want {
		if bytes.Equal(want[j], video[0]) {
			join = j
			break
		}
	}
	if join < 0 {
		t.Fatalf("the viewer's first video tag (%s) is none of the clip's", describe(video[0]))
	}
	for i, tag := range video {
		if join+i >= len(want) {
			t.Fatalf("the viewer got %d video tags past the clip's end", len(video)-i)
		}
		if !bytes.Equal(tag, want[join+i]) {
			t.Fatalf("video tag %d after the join (%s) is not the clip's tag %d (%s): lost, reordered or altered",
				i, describe(tag), join+i, describe(want[join+i]))
		}
	}
	if end := join + len(video); end != len(want) {
		t.Errorf("the viewer's video stops at the clip's tag %d of %d", end, len(want))
	}
	if len(want)-join < len(want)/2 {
		t.Errorf("the viewer joined at the clip's tag %d of %d: too late to test much", join, len(want))
	}
	if n := r.edge.CounterSum("mediapipe_plugin_restarts_total", nil); n != 0 {
		t.Errorf("restarts = %v without a kill", n)
	}
}

// TestRelayPluginKilledMidStream: as above, and kill -9 of the plugin
// mid-stream: it is restarted and the stream goes on; other/feed is never
// served, before the kill or after.
func TestRelayPluginKilledMidStream(t *testing.T) {
	r := startRelay(t)
	want, wait := r.pushBoth(t, 8)
	first := testrun.Watch(r.movieURL)
	r.otherNeverServed(t, "before the kill")

	// Kill the plugin mid-stream: it comes back and the stream goes on.
	pid := r.stage.PID()
	time.Sleep(time.Second) // let the viewer get well into the stream
	before := first.Count()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for r.stage.PID() == pid || r.stage.PID() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("plugin not restarted within 5 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.pids = append(r.pids, r.stage.PID())
	second := testrun.Watch(r.movieURL)
	r.otherNeverServed(t, "after the restart")

	wait()
	got1 := first.Wait(t, 15*time.Second)
	got2 := second.Wait(t, 15*time.Second)

	if n := len(got1); n <= before+30 {
		t.Errorf("the first viewer got %d tags, %d before the kill: the stream did not go on", n, before)
	}
	for who, got := range map[string][][]byte{"viewer before the kill": got1, "viewer after the restart": got2} {
		// No audio frames. (An AAC sequence header may lead the response: the
		// restarted plugin strips it from the stream's init tags again, but a
		// viewer joining in the instant between the init arriving and the
		// stripped init coming back can still be sent it.)
		if frames, _ := audioTags(got); frames > 0 {
			t.Errorf("%s got %d audio frames with drop_audio", who, frames)
		}
		// Every video tag is one of the clip's, byte for byte, in order (what
		// the dead process held is lost: gaps are allowed here).
		video := videoTags(got)
		j := 0
		for i, tag := range video {
			for j < len(want) && !bytes.Equal(want[j], tag) {
				j++
			}
			if j == len(want) {
				t.Fatalf("%s: video tag %d (%s) is not the clip's next tag", who, i, describe(tag))
			}
		}
		if len(video) < 60 {
			t.Errorf("%s got only %d video tags", who, len(video))
		}
	}
	// What the plugin passed after its restart is whole: the second viewer
	// (joined after it) ends with a long run of the clip's last tags, byte
	// for byte. Its cached GOP may reach back across the kill.
	v2 := videoTags(got2)
	run := 0
	for run < len(v2) && run < len(want) && bytes.Equal(v2[len(v2)-1-run], want[len(want)-1-run]) {
		run++
	}
	if run < 90 {
		t.Errorf("viewer after the restart: only its last %d of %d video tags are the clip's last ones", run, len(v2))
	}
	if n := r.edge.CounterSum("mediapipe_plugin_restarts_total", nil); n != 1 {
		t.Errorf("restarts = %v, want 1", n)
	}
}
