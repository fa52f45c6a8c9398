package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core/control"
	"github.com/mediapipe/mediapipe/host"
	"github.com/mediapipe/mediapipe/internal/relaytoml"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
	_ "github.com/mediapipe/mediapipe/stages/fec"
	_ "github.com/mediapipe/mediapipe/stages/netsim"
)

// TestRelayWithPolicyPlugin: fec-encoder's controller asks the
// policy-worst-loss example plugin (policy = "plugin", path = its binary,
// as docs/plugins.md shows) while the edge loses 5 % before its
// fec-decoder. The plugin's decision (twice the worst edge's loss, at least
// 0.05) reaches the encoder, the edge rebuilds packets with the parity, the
// viewer gets the clip's tags intact, and the plugin's process ends with
// the runtime.
func TestRelayWithPolicyPlugin(t *testing.T) {
	testmedia.NeedFFmpeg(t)
	dir := t.TempDir()
	bin := buildPlugin(t, dir, "policy-worst-loss")
	clip := testmedia.Clip(t, testmedia.Options{Seconds: 8})
	want := videoTags(testmedia.Tags(t, clip))

	rtmp, rtx, udp, httpAddr := testrun.FreeTCP(t), testrun.FreeUDP(t), testrun.FreeUDP(t), testrun.FreeTCP(t)
	rl := relaytoml.Relay{RTMP: rtmp, RTX: rtx, UDP: udp, HTTP: httpAddr, Latency: 300 * time.Millisecond,
		SourceParams: "  fec_payload_type = 101\n",
		BeforeReorder: `
  [[pipeline.stage]]
  use = "netsim"
  drop = 0.05
  seed = 7

  [[pipeline.stage]]
  use = "fec-decoder"
`,
		BeforeSink: `
  [[pipeline.stage]]
  use = "fec-encoder"
  policy = "plugin"
  path = "./policy-worst-loss"
  overhead = 0.0
`}
	// Registered before the runtimes, so it runs after they stopped
	// (cleanups run last-registered first): the plugin's process ends
	// with the cloud's runtime.
	pluginPID := 0
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for pluginPID > 0 && syscall.Kill(pluginPID, 0) == nil {
			if time.Now().After(deadline) {
				t.Errorf("policy plugin process %d left behind after shutdown", pluginPID)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	edge := start(t, "edge.toml", dir, rl.Edge())
	cloud := start(t, "cloud.toml", dir, rl.Cloud())

	url := "http://" + httpAddr + "/live/pol.flv"
	push := testmedia.Push(t, context.Background(), clip, "rtmp://"+rtmp+"/live/pol", true)
	testrun.WaitPlayable(t, url, 5*time.Second)
	viewer := testrun.Watch(url)

	var last control.Tick
	testrun.Eventually(t, 8*time.Second, "the plugin's decision with parity", func() bool {
		tick, ok := lastTick(t, cloud)
		if !ok || tick.Err != "" || len(tick.Input.Streams) != 1 {
			return false
		}
		last = tick
		s := tick.Input.Streams[0]
		return len(s.Edges) == 1 && s.Edges[0].FractionLost > 0 && tick.Decision.Streams[s.SSRC].Overhead >= 0.05
	})
	s := last.Input.Streams[0]
	if last.Policy != "plugin" {
		t.Errorf("policy %q, want plugin", last.Policy)
	}
	// worst-loss answers twice the worst edge's loss within 0.05 … 0.5.
	if got, want := last.Decision.Streams[s.SSRC].Overhead, min(max(2*s.Edges[0].FractionLost, 0.05), 0.5); got < want-1e-9 || got > want+1e-9 {
		t.Errorf("overhead %.4f for a worst loss of %.4f, want %.4f", got, s.Edges[0].FractionLost, want)
	}
	t.Logf("plugin decided overhead %.3f (edge's loss %.3f): %s", last.Decision.Streams[s.SSRC].Overhead, s.Edges[0].FractionLost, last.Decision.Reason)

	if err := push.Wait(); err != nil {
		t.Fatalf("ffmpeg push: %v\n%s", err, testmedia.Stderr(push))
	}
	got := videoTags(viewer.Wait(t, 10*time.Second))
	// The viewer joined mid-clip: what it got must be the clip's last
	// len(got) video tags, byte for byte, and most of them.
	if len(got) < len(want)/2 {
		t.Fatalf("viewer got %d of the clip's %d video tags", len(got), len(want))
	}
	for i, tag := range got {
		if w := want[len(want)-len(got)+i]; !bytes.Equal(tag, w) {
			t.Fatalf("video tag %d of %d differs from the clip's: %s vs %s", i, len(got), describe(tag), describe(w))
		}
	}
	if rebuilt := edge.CounterSum("mediapipe_stage_fec_recovered_packets_total", nil); rebuilt == 0 {
		t.Errorf("fec-decoder rebuilt nothing with the plugin's parity")
	}
	if skipped := edge.CounterSum("mediapipe_stage_drops_total", map[string]string{"stage": "rtp-reorder", "reason": "gap_skipped"}); skipped != 0 {
		t.Errorf("%v packets skipped unrepaired", skipped)
	}

	pids := pluginPIDs(t, bin)
	if len(pids) != 1 {
		t.Fatalf("%d processes run %s, want 1: %v", len(pids), bin, pids)
	}
	pluginPID = pids[0]
}

// lastTick is the controller's latest round in rt's fec-encoder.
func lastTick(t *testing.T, rt *host.Runtime) (control.Tick, bool) {
	t.Helper()
	for _, p := range rt.Running() {
		for _, rs := range p.Stages {
			if r, ok := rs.Stage.(control.Reporter); ok {
				return r.LastTick()
			}
		}
	}
	t.Fatal("no stage reports a controller's rounds")
	return control.Tick{}, false
}

// pluginPIDs lists the processes running the binary at path (read from
// /proc: the plugin is a child of this test process).
func pluginPIDs(t *testing.T, path string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc to find the plugin's process: %v", err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if arg0, _, _ := bytes.Cut(cmd, []byte{0}); string(arg0) == path {
			pids = append(pids, pid)
		}
	}
	return pids
}
