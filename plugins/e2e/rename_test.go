package e2e

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/host"
	"github.com/mediapipe/mediapipe/internal/relaytoml"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// TestRenamingPluginKilledViewerKeepsPlaying: the stream-rename example
// plugin (written with the SDK's Rename) serves live/movie as public/lobby
// on the edge. kill -9 of the plugin while a viewer watches public/lobby:
// the plugin restarts, opens public/lobby again within the restart grace and
// the host re-attaches it, so the viewer's one HTTP response goes on with
// the clip's tags, byte for byte and in order, to the clip's end. The
// restart's log line names the stream held; the restart is counted under
// the plugin's spec name.
func TestRenamingPluginKilledViewerKeepsPlaying(t *testing.T) {
	testmedia.NeedFFmpeg(t)
	dir := t.TempDir()
	buildPlugin(t, dir, "stream-rename")
	rtmp, rtx, udp, httpAddr := testrun.FreeTCP(t), testrun.FreeUDP(t), testrun.FreeUDP(t), testrun.FreeTCP(t)
	rl := relaytoml.Relay{RTMP: rtmp, RTX: rtx, UDP: udp, HTTP: httpAddr, Latency: 150 * time.Millisecond, AfterReassembler: `
  [[pipeline.stage]]
  plugin = "./stream-rename"
  rename = {"live/movie" = "public/lobby"}
`}
	var pids []int
	t.Cleanup(func() { // runs after the runtimes stopped (registered first): no plugin process is left
		for _, pid := range pids {
			testrun.Eventually(t, 5*time.Second, "plugin process gone after shutdown", func() bool { return syscall.Kill(pid, 0) != nil })
		}
	})
	var logs testrun.LogBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	edge := testrun.Start(t, "edge.toml", rl.Edge(), nil, testrun.Dir(dir), testrun.StopWithin(15*time.Second),
		testrun.Build(host.Options{Logger: log})).RT
	stage := pluginStage(t, edge)
	pids = append(pids, stage.PID())
	start(t, "cloud.toml", dir, rl.Cloud())

	clip := testmedia.Clip(t, testmedia.Options{Seconds: 8})
	want := videoTags(testmedia.Tags(t, clip))
	push := testmedia.Push(t, context.Background(), clip, "rtmp://"+rtmp+"/live/movie", true)
	url := "http://" + httpAddr + "/public/lobby.flv"
	testrun.WaitPlayable(t, url, 10*time.Second)
	viewer := testrun.Watch(url)
	testrun.Eventually(t, 5*time.Second, "the viewer well into the stream", func() bool { return viewer.Count() > 30 })

	pid := stage.PID()
	before := viewer.Count()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testrun.Eventually(t, 5*time.Second, "the plugin restarted", func() bool { p := stage.PID(); return p != pid && p != 0 })
	pids = append(pids, stage.PID())
	// The viewer's response was not ended: it goes on receiving.
	testrun.Eventually(t, 5*time.Second, "the viewer receiving after the restart", func() bool { return viewer.Count() > before+60 })
	select {
	case <-viewer.Done():
		t.Fatalf("the viewer's response ended at the plugin's death: %v", viewer.Err())
	default:
	}

	if err := push.Wait(); err != nil {
		t.Fatalf("ffmpeg push: %v\n%s", err, testmedia.Stderr(push))
	}
	got := viewer.Wait(t, 15*time.Second)

	// Every video tag of the one response is the clip's, byte for byte, in
	// order (what the dead process held is lost: gaps are allowed), and it
	// ends with a long run of the clip's last tags: it played on to the end.
	video := videoTags(got)
	j := 0
	for i, tag := range video {
		for j < len(want) && !bytes.Equal(want[j], tag) {
			j++
		}
		if j == len(want) {
			t.Fatalf("video tag %d (%s) is not the clip's next tag", i, describe(tag))
		}
	}
	run := 0
	for run < len(video) && run < len(want) && bytes.Equal(video[len(video)-1-run], want[len(want)-1-run]) {
		run++
	}
	if run < 90 {
		t.Errorf("only the last %d of the viewer's %d video tags are the clip's last ones: it did not play on", run, len(video))
	}
	// Labelled by the name the plugin's spec declares, not by its path.
	if n := edge.CounterSum("mediapipe_plugin_restarts_total", map[string]string{"stage": "stream-rename"}); n != 1 {
		t.Errorf("restarts of stage=\"stream-rename\" = %v, want 1", n)
	}
	var died, reattached bool
	for _, line := range logs.Lines() {
		died = died || strings.Contains(line, "plugin died; restarting") && strings.Contains(line, "streams_held=[public/lobby]")
		reattached = reattached || strings.Contains(line, "re-attached") && strings.Contains(line, "stream=public/lobby")
	}
	if !died || !reattached {
		t.Errorf("log: restart line naming public/lobby %v, re-attach line %v:\n%s", died, reattached, logs.String())
	}
}
