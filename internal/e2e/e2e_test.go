// Package e2e runs whole relays — cloud and edge pipelines built from the
// pipeline-file text a user would write — against real ffmpeg on both ends.
//
// What lives here, by file:
//   - e2e_test.go: cloud and edge in one process, with and without loss
//     (TestRelay), and the helpers the other files share;
//   - process_test.go, junk_test.go: cloud and edge as separate mediapipe
//     processes; a late edge, junk thrown at every listener;
//   - multicast_test.go: one cloud, two edges on a multicast group;
//   - cloud_test.go, cloud_wire_test.go: the cloud alone, its UDP output read
//     off the wire (RTP, SDES, BYE, repairs over QUIC);
//   - record_test.go, secret_test.go, stall_test.go: recording through loss,
//     secrets kept out of logs, a stalled viewer;
//   - rtmp_to_httpflv_test.go: rtmp-source → flv-tagger → httpflv-sink built
//     stage by stage, ffmpeg viewers joining mid-GOP;
//   - flv_over_udp_test.go: udp-sink → udp-source carrying fragmented FLV.
//
// Relays with a plugin live in plugins/e2e (they build the example plugins
// first) and the sr-enhancer relay in stages/srenhancer/e2etest (it uses
// that stage's internal srtest). Tests of one stage stay with the stage.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/internal/relaytoml"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
	_ "github.com/mediapipe/mediapipe/stages/all"
)

// clipOpts is the clip every relay test pushes: 8 s, a keyframe a second.
var clipOpts = testmedia.Options{Seconds: 8}

// addrs are one relay's listeners, each on a free loopback port.
type addrs struct {
	RTMP, RTX, UDP, HTTP string
}

func newAddrs(t *testing.T) addrs {
	return addrs{RTMP: testrun.FreeTCP(t), RTX: testrun.FreeUDP(t), UDP: testrun.FreeUDP(t), HTTP: testrun.FreeTCP(t)}
}

// cloudTOML is the example cloud with reconnect_grace off: these tests wait
// for a stream's end after its publisher's (TestPublisherReconnect tests the
// grace).
func cloudTOML(a addrs) string { return cloudGrace(a, 0) }

// cloudGrace is the example cloud with rtmp-source's reconnect_grace set.
func cloudGrace(a addrs, grace time.Duration) string {
	return withParam(relaytoml.Relay{RTMP: a.RTMP, RTX: a.RTX, UDP: a.UDP}.Cloud(), "rtmp-source", "reconnect_grace", grace.String())
}

// withParam sets key = value (a string) on the first stage of toml that
// uses stage.
func withParam(toml, stage, key, value string) string {
	use := fmt.Sprintf("use = %q", stage)
	return strings.Replace(toml, use, fmt.Sprintf("%s\n  %s = %q", use, key, value), 1)
}

// edgeTOML builds an edge; netsim, when not empty, is inserted between
// udp-source and rtp-reorder (loss on the cloud→edge path). The repair
// budget is 300 ms: generous, so that a CI machine busy with other test
// packages still repairs every loss (the default 80 ms is for quiet edges).
func edgeTOML(name string, a addrs, netsim string, sink string) string {
	ns := ""
	if netsim != "" {
		ns = "  [[pipeline.stage]]\n  use = \"netsim\"\n" + netsim + "\n"
	}
	if sink == "" {
		sink = fmt.Sprintf("  [[pipeline.stage]]\n  use = \"httpflv-sink\"\n  listen = %q\n", a.HTTP)
	}
	return fmt.Sprintf(`
[[pipeline]]
name = %q
  [[pipeline.stage]]
  use = "udp-source"
  listen = %q
%s  [[pipeline.stage]]
  use = "rtp-reorder"
  retransmit = %q
  latency = "300ms"
  [[pipeline.stage]]
  use = "flv-reassembler"
%s`, name, a.UDP, ns, a.RTX, sink)
}

// mediaTags keeps the audio and video frames: not the sequence headers
// (a viewer gets those first, in the sink's order, checked by assertInit)
// nor the AVC end-of-sequence marker ffmpeg writes itself at the end of
// every FLV it muxes.
func mediaTags(tags [][]byte) [][]byte {
	var out [][]byte
	for _, tag := range testmedia.MediaTags(tags) {
		if isSequenceHeader(tag) {
			continue
		}
		if tag[0]&0x1f == flv.TypeVideo && len(tag) > flv.HeaderSize+1 && tag[flv.HeaderSize+1] == flv.AVCEndOfSequence {
			continue
		}
		out = append(out, tag)
	}
	return out
}

func isSequenceHeader(tag []byte) bool {
	body := tag[flv.HeaderSize:]
	switch tag[0] & 0x1f {
	case flv.TypeVideo:
		v, _ := flv.ParseVideo(body)
		return v.IsSequenceHeader()
	case flv.TypeAudio:
		a, _ := flv.ParseAudio(body)
		return a.IsSequenceHeader()
	}
	return false
}

// sequenceHeaders returns the clip's sequence header tags by type.
func sequenceHeaders(tags [][]byte) map[uint8][]byte {
	out := map[uint8][]byte{}
	for _, tag := range tags {
		if isSequenceHeader(tag) {
			out[tag[0]&0x1f] = tag
		}
	}
	return out
}

// assertSuffix checks that got is exactly the last len(got) tags of want,
// byte for byte, and holds at least min of them.
func assertSuffix(t *testing.T, who string, got, want [][]byte, min int) {
	t.Helper()
	if len(got) < min {
		t.Fatalf("%s got %d media tags, want at least %d (the clip has %d)", who, len(got), min, len(want))
	}
	if len(got) > len(want) {
		t.Fatalf("%s got %d media tags, more than the clip's %d", who, len(got), len(want))
	}
	off := len(want) - len(got)
	for i := range got {
		if !bytes.Equal(got[i], want[off+i]) {
			h, _ := flv.ParseHeader(got[i])
			w, _ := flv.ParseHeader(want[off+i])
			t.Fatalf("%s: media tag %d of %d differs from the clip's tag %d: got type %d ts %d size %d, want type %d ts %d size %d",
				who, i, len(got), off+i, h.Type, h.Timestamp, h.DataSize, w.Type, w.Timestamp, w.DataSize)
		}
	}
	if !flv.IsVideoKeyframe(got[firstVideo(got)][flv.HeaderSize:]) {
		t.Errorf("%s: first video tag is not a keyframe", who)
	}
}

func firstVideo(tags [][]byte) int {
	for i, tag := range tags {
		if tag[0]&0x1f == flv.TypeVideo {
			return i
		}
	}
	return 0
}

// assertInit checks that a viewer's response starts with onMetaData and the
// clip's own AVC and AAC sequence headers, as a player needs.
func assertInit(t *testing.T, who string, tags [][]byte, clip map[uint8][]byte) {
	t.Helper()
	var meta, vseq, aseq bool
	for _, tag := range tags {
		typ := tag[0] & 0x1f
		if typ == flv.TypeScript {
			meta = true
			continue
		}
		if !isSequenceHeader(tag) {
			break
		}
		if !bytes.Equal(tag[flv.HeaderSize:], clip[typ][flv.HeaderSize:]) {
			t.Errorf("%s: sequence header of type %d differs from the clip's", who, typ)
		}
		vseq = vseq || typ == flv.TypeVideo
		aseq = aseq || typ == flv.TypeAudio
	}
	if !meta || !vseq || !aseq {
		t.Errorf("%s: response does not start with onMetaData, AVC and AAC sequence headers (meta %v, video %v, audio %v)", who, meta, vseq, aseq)
	}
}

// frameSuffix checks that ffmpeg's per-packet hashes of a viewer's file are
// the clip's last packets (compared by size and hash; stream order may differ).
func frameSuffix(t *testing.T, who string, got, want []testmedia.Frame, min int) {
	t.Helper()
	if len(got) < min || len(got) > len(want) {
		t.Fatalf("%s: %d packets, want between %d and %d", who, len(got), min, len(want))
	}
	off := len(want) - len(got)
	for i := range got {
		if got[i].Size != want[off+i].Size || got[i].Hash != want[off+i].Hash {
			t.Fatalf("%s: packet %d (%s) differs from the clip's packet %d (%s)", who, i, got[i], off+i, want[off+i])
		}
	}
}

// ffViewer is a player reading an edge: `ffmpeg -i URL -map 0 -c copy -f
// flv FILE`, so its packets can be compared with the clip's.
type ffViewer struct {
	url, path string
	cmd       *exec.Cmd
	stderr    testrun.LogBuffer
	done      chan struct{}
	err       error // Wait's result, set before done closes
}

// watchFFmpeg starts an ffmpeg viewer of url; it is killed at the end of the
// test if still running.
func watchFFmpeg(t *testing.T, url string) *ffViewer {
	t.Helper()
	v := &ffViewer{url: url, path: filepath.Join(t.TempDir(), "viewer.flv"), done: make(chan struct{})}
	v.cmd = exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
		"-rw_timeout", "15000000", "-i", url, "-map", "0", "-c", "copy", "-f", "flv", "-y", v.path)
	v.cmd.Stderr = &v.stderr
	if err := v.cmd.Start(); err != nil {
		t.Fatalf("starting ffmpeg viewer of %s: %v", url, err)
	}
	go func() {
		v.err = v.cmd.Wait()
		close(v.done)
	}()
	t.Cleanup(func() {
		select {
		case <-v.done:
		default:
			_ = v.cmd.Process.Kill()
			<-v.done
		}
	})
	return v
}

// check waits (within 20 s) for the viewer's response to end, as the stream's
// end ends it, then requires ffmpeg's per-packet hashes of what it saved to
// be exactly the clip's last packets, at least min of them, and the file to
// decode without a complaint.
func (v *ffViewer) check(t *testing.T, who string, clip []testmedia.Frame, min int) {
	t.Helper()
	select {
	case <-v.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: ffmpeg still reading %s 20 s on: the stream's end did not end the response", who, v.url)
	}
	if v.err != nil {
		t.Fatalf("%s: ffmpeg -i %s: %v\n%s", who, v.url, v.err, v.stderr.String())
	}
	frameSuffix(t, who, testmedia.FrameMD5(t, v.path), clip, min)
	testmedia.DecodeClean(t, v.path)
}

// framesFrom counts the clip's packets at or after ms: those a viewer that
// joined at ms into the stream must all receive.
func framesFrom(clip []testmedia.Frame, ms int64) int {
	n := 0
	for _, f := range clip {
		if f.DTS >= ms {
			n++
		}
	}
	return n
}

// relayTest starts a test that pushes real media through a relay: skipped
// without ffmpeg or with -short, and run in parallel with the others like
// it, which spend their time waiting on ffmpeg's real-time push, not on CPU
// (go test runs GOMAXPROCS of them at once).
func relayTest(t *testing.T) {
	t.Helper()
	testmedia.NeedFFmpeg(t)
	if testing.Short() {
		t.Skip("pushes real media through a relay")
	}
	t.Parallel()
}

func TestRelay(t *testing.T) {
	relayTest(t)
	clip := testmedia.Clip(t, clipOpts)
	all := testmedia.Tags(t, clip)
	clipTags, seqs := mediaTags(all), sequenceHeaders(all)
	clipFrames := testmedia.FrameMD5(t, clip)

	cases := []struct {
		name   string
		netsim string
	}{
		{"no loss", ""},
		{"10% random loss", "  drop = 0.10\n  seed = 7"},
		{"3% loss in bursts of 5", "  drop = 0.03\n  burst = 5\n  seed = 11"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := newAddrs(t)
			cloud := testrun.Start(t, "cloud.toml", cloudTOML(a), nil)
			edge := testrun.Start(t, "edge.toml", edgeTOML("edge", a, tc.netsim, ""), nil)
			url := "http://" + a.HTTP + "/live/relay.flv"

			push := testmedia.Push(t, context.Background(), clip, "rtmp://"+a.RTMP+"/live/relay", true)
			testrun.WaitPlayable(t, url, 5*time.Second)
			goViewer := testrun.Watch(url)
			rec := watchFFmpeg(t, url)

			if err := push.Wait(); err != nil {
				t.Fatalf("ffmpeg push: %v\n%s", err, testmedia.Stderr(push))
			}
			goViewerTags := goViewer.Wait(t, 10*time.Second)
			got := mediaTags(goViewerTags)
			// Joined within the first ~2 s of an 8 s clip: at least half of it arrives.
			assertSuffix(t, "viewer", got, clipTags, len(clipTags)/2)
			assertInit(t, "viewer", goViewerTags, seqs)
			rec.check(t, "ffmpeg viewer", clipFrames, len(clipFrames)/2)

			if tc.netsim != "" {
				lost := edge.RT.CounterSum("mediapipe_stage_drops_total", map[string]string{"stage": "netsim"})
				skipped := edge.RT.CounterSum("mediapipe_stage_drops_total", map[string]string{"stage": "rtp-reorder", "reason": "gap_skipped"})
				if lost == 0 {
					t.Errorf("netsim dropped nothing: the test did not test loss")
				}
				if skipped != 0 {
					t.Errorf("%v packets skipped unrepaired", skipped)
				}
				t.Logf("netsim dropped %v packets, all repaired", lost)
			}
			_ = cloud
		})
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	testrun.RemoveBinary() // built by the tests that run cloud and edge as processes
	os.Exit(code)
}
