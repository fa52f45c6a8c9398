package e2etest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
	"github.com/mediapipe/mediapipe/stages/srenhancer/internal/srtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testrun.RemoveBinary()
	os.Exit(code)
}

// isolated is the relay above with isolate = true on sr-enhancer and
// rtp-fragmenter: each runs in a child process of the mediapipe process.
var isolated = strings.NewReplacer(
	"use = \"sr-enhancer\"\n", "use = \"sr-enhancer\"\n  isolate = true\n",
	"use = \"rtp-fragmenter\"\n", "use = \"rtp-fragmenter\"\n  isolate = true\n",
).Replace(relay)

// TestIsolatedStagesSurviveKill runs the relay as a real mediapipe process
// with sr-enhancer and rtp-fragmenter isolated, and kills sr-enhancer's
// child, then rtp-fragmenter's, with SIGKILL while a viewer watches: each
// death is counted and the stage restarted, and the viewer's one response
// goes on to the stream's end, 1280×720 video decoding cleanly, with audio
// byte-identical to the clip's (neither stage changes audio bytes).
func TestIsolatedStagesSurviveKill(t *testing.T) {
	clip := testmedia.Clip(t, testmedia.Options{Seconds: 10})
	clipAudio := audioTags(testmedia.Tags(t, clip))
	srv := srtest.StandIn(t, "ok")
	rtmp, rtx, udp, web := testrun.FreeTCP(t), testrun.FreeUDP(t), testrun.FreeUDP(t), testrun.FreeTCP(t)
	text := fmt.Sprintf(isolated, rtmp, rtx, udp, web, srv.URL+"/sr")
	testrun.Binary(t) // built before the clock starts
	start := time.Now()
	mp := testrun.StartProcess(t, "relay.toml", text, nil, testrun.StopWithin(15*time.Second))
	sr := isolatedChild(t, mp.PID, "sr-enhancer")
	frag := isolatedChild(t, mp.PID, "rtp-fragmenter")
	t.Logf("mediapipe pid %d; isolated sr-enhancer pid %d, rtp-fragmenter pid %d", mp.PID, sr, frag)

	push := exec.Command("ffmpeg", "-v", "error", "-re", "-i", clip, "-c", "copy", "-f", "flv", "rtmp://"+rtmp+"/live/movie")
	if err := push.Start(); err != nil {
		t.Fatal(err)
	}
	defer push.Process.Kill()
	url := "http://" + web + "/live/movie.flv"
	testrun.WaitPlayable(t, url, 15*time.Second)
	v := testrun.Watch(url)
	out := filepath.Join(t.TempDir(), "viewer.flv")
	view := exec.Command("ffmpeg", "-v", "error", "-i", url, "-c", "copy", "-f", "flv", out)
	if err := view.Start(); err != nil {
		t.Fatal(err)
	}
	defer view.Process.Kill()
	viewDone := make(chan error, 1)
	go func() { viewDone <- view.Wait() }()

	// Kill sr-enhancer's child once the viewer plays.
	testrun.Eventually(t, testrun.WaitLimit, "the viewer to get 40 tags", func() bool { return v.Count() >= 40 })
	restarts := func(stage string) float64 {
		return mp.Sum(t, "mediapipe_plugin_restarts_total", map[string]string{"stage": stage})
	}
	if n := restarts("sr-enhancer"); n != 0 {
		t.Fatalf("sr-enhancer restarts = %v before the kill", n)
	}
	if err := syscall.Kill(sr, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d: %v", sr, err)
	}
	killedAt := v.Count()
	testrun.Eventually(t, 10*time.Second, "sr-enhancer's restart to be counted", func() bool { return restarts("sr-enhancer") == 1 })
	sr2 := isolatedChild(t, mp.PID, "sr-enhancer")
	if sr2 == sr {
		t.Fatalf("sr-enhancer still runs in the killed pid %d", sr)
	}
	// What the killed child started (its ffmpeg encoders) goes with it.
	testrun.Eventually(t, 10*time.Second, "the killed child's process group to be gone", func() bool { return len(group(sr)) == 0 })
	testrun.Eventually(t, testrun.WaitLimit, "tags after the restart", func() bool { return v.Count() >= killedAt+60 })

	// Then rtp-fragmenter's child: restarted the same way, and the edge
	// sees the same RTP stream go on (the bridge keeps its SSRC and
	// sequence), so the same viewer keeps playing.
	if err := syscall.Kill(frag, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d: %v", frag, err)
	}
	fragKilledAt := v.Count()
	testrun.Eventually(t, 10*time.Second, "rtp-fragmenter's restart to be counted", func() bool { return restarts("rtp-fragmenter") == 1 })
	frag2 := isolatedChild(t, mp.PID, "rtp-fragmenter")
	if frag2 == frag {
		t.Fatalf("rtp-fragmenter still runs in the killed pid %d", frag)
	}
	testrun.Eventually(t, testrun.WaitLimit, "tags after rtp-fragmenter's restart", func() bool { return v.Count() >= fragKilledAt+60 })

	if err := push.Wait(); err != nil {
		t.Fatalf("publisher: %v", err)
	}
	tags := v.Wait(t, 30*time.Second) // the stream's end ends the one response: it was never cut
	if err := testrun.Within(t, viewDone, 30*time.Second, "the ffmpeg viewer to end with the stream"); err != nil {
		t.Fatalf("ffmpeg viewer: %v", err)
	}
	for _, stage := range []string{"sr-enhancer", "rtp-fragmenter"} {
		if n := restarts(stage); n != 1 {
			t.Errorf("%s restarts = %v after one kill, want 1", stage, n)
		}
	}

	// Audio passes sr-enhancer untouched: every audio tag the viewer got is
	// the clip's, byte for byte, in order; only what the killed child had
	// may be missing.
	got := audioTags(tags)
	if missing, ok := subsequence(got, clipAudio); !ok {
		t.Errorf("the viewer's %d audio tags are not the clip's, in order", len(got))
	} else {
		t.Logf("viewer: %d tags, %d audio of the clip's %d (%d missing from its join on); %d tags before the kill",
			len(tags), len(got), len(clipAudio), missing, killedAt)
		// sr-enhancer holds audio behind video in flight, up to its timeout
		// (1 s) and a 3 s slack: what its killed child held is lost with it;
		// then whatever rtp-fragmenter's child had in flight, and what came
		// while each was restarting on a loaded machine.
		if missing > 260 { // 6 s of AAC
			t.Errorf("%d audio tags missing after the join, want at most 260 (what the killed children can hold)", missing)
		}
	}
	// Video decodes cleanly at 1280×720 across the restart (the new child
	// was sent the stream's headers again and waited for a keyframe), and
	// the isolated stage reached the backend. A child behind the stream
	// (after the restart, or on a loaded machine) upscales keyframes
	// conventionally until it catches up, as sr-enhancer does whenever it
	// is late, so not every keyframe need carry the mark.
	srtest.CheckClean(t, out, 1280, 720)
	pics := srtest.KeyframePictures(t, out, 1280, 720)
	if len(pics) < 4 {
		t.Fatalf("the viewer decoded %d keyframes, want at least 4", len(pics))
	}
	marked := 0
	for _, pic := range pics {
		if srtest.Marked(pic, 1280) {
			marked++
		}
	}
	if marked == 0 {
		t.Errorf("none of the %d keyframes carries the backend's mark: the isolated stage never reached it", len(pics))
	}
	t.Logf("%d of %d keyframes carry the backend's mark", marked, len(pics))

	if err := mp.Stop(); err != nil {
		t.Errorf("mediapipe: %v", err)
	}
	if left := group(sr2, frag2); len(left) > 0 {
		t.Errorf("processes left after mediapipe stopped: %v", left)
	}
	t.Logf("took %.1f s", time.Since(start).Seconds())
}

// audioTags keeps the audio frames: not the AAC sequence header, which a
// viewer gets first and a restarted child passes on again.
func audioTags(tags [][]byte) [][]byte {
	var out [][]byte
	for _, tag := range tags {
		if len(tag) <= flv.HeaderSize || tag[0]&0x1f != flv.TypeAudio {
			continue
		}
		if a, ok := flv.ParseAudio(tag[flv.HeaderSize:]); ok && a.IsSequenceHeader() {
			continue
		}
		out = append(out, tag)
	}
	return out
}

// subsequence reports whether got appears in want in order (each tag
// byte-identical) from got's first tag on, and how many of want's tags from
// there to the last matched one got lacks.
func subsequence(got, want [][]byte) (missing int, ok bool) {
	j := 0
	for j < len(want) && len(got) > 0 && !bytes.Equal(want[j], got[0]) {
		j++
	}
	for _, g := range got {
		for j < len(want) && !bytes.Equal(want[j], g) {
			j++
			missing++
		}
		if j == len(want) {
			return missing, false
		}
		j++
	}
	return missing, true
}

// isolatedChild waits for the one child of parent serving stage (found
// through /proc's parent links and command lines, never by name) and
// returns its pid.
func isolatedChild(t *testing.T, parent int, stage string) int {
	t.Helper()
	var pid int
	testrun.Eventually(t, 10*time.Second, "the isolated "+stage+" process", func() bool {
		pids := isolatedPIDs(parent, stage)
		if len(pids) == 1 {
			pid = pids[0]
		}
		return len(pids) == 1
	})
	return pid
}

// isolatedPIDs lists the children of parent running `serve-stage STAGE`.
func isolatedPIDs(parent int, stage string) []int {
	var pids []int
	for _, pid := range procs(func(f []string) bool { return f[1] == strconv.Itoa(parent) }) {
		cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err == nil && bytes.HasSuffix(cmd, []byte("\x00serve-stage\x00"+stage+"\x00")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// group lists the live processes of the process groups led by leaders (an
// isolated child leads its own, with whatever it started).
func group(leaders ...int) []int {
	want := map[string]bool{}
	for _, l := range leaders {
		want[strconv.Itoa(l)] = true
	}
	// A zombie (state Z) has ended; its parent has yet to reap it.
	return procs(func(f []string) bool { return want[f[2]] && f[0] != "Z" })
}

// procs lists the pids whose /proc/PID/stat fields after the command name
// (state, ppid, pgrp, ...) match.
func procs(match func(fields []string) bool) []int {
	var out []int
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, st := range stats {
		b, err := os.ReadFile(st)
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 3 || !match(f) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(st))); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// TestIsolatedChildExitsWithParent: a mediapipe killed with SIGKILL leaves
// no isolated stage behind: the child sees its parent gone and exits.
func TestIsolatedChildExitsWithParent(t *testing.T) {
	text := fmt.Sprintf(`
[[pipeline]]
name = "p"
  [[pipeline.stage]]
  use = "udp-source"
  listen = %q
  isolate = true
  [[pipeline.stage]]
  use = "udp-sink"
  destinations = [%q]
`, testrun.FreeUDP(t), testrun.FreeUDP(t))
	mp := testrun.StartProcess(t, "p.toml", text, nil)
	child := isolatedChild(t, mp.PID, "udp-source")
	if err := syscall.Kill(mp.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testrun.Within(t, mp.Exited(), 10*time.Second, "mediapipe to die")
	_ = mp.Stop() // it was killed: Stop only reports that
	testrun.Eventually(t, 5*time.Second, "the orphaned isolated stage to exit", func() bool { return len(group(child)) == 0 })
}
