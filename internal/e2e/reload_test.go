package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/internal/relaytoml"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// relayFile is a cloud sending to the given edges' UDP addresses and those
// edges, in one file, as pipeline.example.toml runs them.
func relayFile(a addrs, edges ...addrs) string {
	dests := make([]string, len(edges))
	for i, e := range edges {
		dests[i] = e.UDP
	}
	cloud := relaytoml.Relay{RTMP: a.RTMP, RTX: a.RTX, Destinations: dests}.Cloud()
	for i, e := range edges {
		cloud += edgeTOML(fmt.Sprintf("edge%d", i+1), addrs{UDP: e.UDP, RTX: a.RTX, HTTP: e.HTTP}, "", "")
	}
	return cloud
}

// rewrite replaces the process's file with toml (and its admin table).
func rewrite(t *testing.T, p *testrun.Process, toml string) {
	t.Helper()
	text := toml + fmt.Sprintf("\n[admin]\nlisten = %q\n", p.Admin)
	if err := os.WriteFile(p.File, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// hup sends SIGHUP and waits until the process has counted one more reload
// with result.
func hup(t *testing.T, p *testrun.Process, result string) {
	t.Helper()
	labels := map[string]string{"result": result}
	before := p.Sum(t, "mediapipe_config_reloads_total", labels)
	if err := syscall.Kill(p.PID, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testrun.Eventually(t, 15*time.Second, "the reload ("+result+")", func() bool {
		return p.Sum(t, "mediapipe_config_reloads_total", labels) > before
	})
}

// assertRun checks got's media tags are consecutive media tags of the
// clip, byte for byte, from wherever the first one is.
func assertRun(t *testing.T, who string, got, clip [][]byte, min int) {
	t.Helper()
	if len(got) < min {
		t.Fatalf("%s got %d media tags, want at least %d", who, len(got), min)
	}
	off := -1
	for i := range clip {
		if bytes.Equal(clip[i], got[0]) {
			off = i
			break
		}
	}
	if off < 0 || off+len(got) > len(clip) {
		t.Fatalf("%s: first media tag is not the clip's, or the run is longer than the clip", who)
	}
	for i := range got {
		if !bytes.Equal(got[i], clip[off+i]) {
			t.Fatalf("%s: media tag %d differs from the clip's tag %d (a gap or damage)", who, i, off+i)
		}
	}
	if !flv.IsVideoKeyframe(got[firstVideo(got)][flv.HeaderSize:]) {
		t.Errorf("%s: first video tag is not a keyframe", who)
	}
}

// TestReloadAddsAndRemovesAnEdge is issue 12's reload, on a real process
// with ffmpeg publishing: with a viewer attached to the first edge, SIGHUP
// adds a udp-sink destination and a second edge pipeline (the first
// viewer's one response carries the whole clip from where it joined, no
// gap; the new edge plays); a broken file is refused, its problems logged
// and returned by POST /api/reload while everything keeps serving; removing
// the second edge ends its viewer's response cleanly.
func TestReloadAddsAndRemovesAnEdge(t *testing.T) {
	relayTest(t)
	clip := testmedia.Clip(t, testmedia.Options{Seconds: 12})
	all := testmedia.Tags(t, clip)
	clipTags, seqs := mediaTags(all), sequenceHeaders(all)
	a, e2 := newAddrs(t), newAddrs(t)
	one := relayFile(a, a)
	relay := testrun.StartProcess(t, "relay.toml", one, nil)

	push := testmedia.Push(t, context.Background(), clip, "rtmp://"+a.RTMP+"/live/reload", true)
	url1, url2 := "http://"+a.HTTP+"/live/reload.flv", "http://"+e2.HTTP+"/live/reload.flv"
	testrun.WaitPlayable(t, url1, 5*time.Second)
	v1 := testrun.Watch(url1)
	testrun.Eventually(t, 5*time.Second, "the first viewer to play", func() bool { return v1.Count() > 30 })

	// Add the second edge and the cloud's destination for it.
	rewrite(t, relay, relayFile(a, a, e2))
	hup(t, relay, "ok")
	testrun.WaitPlayable(t, url2, 5*time.Second)
	v2 := testrun.Watch(url2)
	testrun.Eventually(t, 5*time.Second, "the second edge's viewer to play", func() bool { return v2.Count() > 30 })

	// A broken file: refused over the API with its problems, nothing stops.
	rewrite(t, relay, strings.Replace(relayFile(a, a, e2), `use = "httpflv-sink"`, `use = "httpflv-sink"`+"\n  lisen = 1", 1))
	resp, err := http.Post("http://"+relay.Admin+"/api/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var res struct{ Problems []string }
	err = json.NewDecoder(resp.Body).Decode(&res)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusUnprocessableEntity || len(res.Problems) == 0 || !strings.Contains(res.Problems[0], "lisen") {
		t.Fatalf("POST /api/reload of a broken file: %d %q (%v), want 422 naming the bad key", resp.StatusCode, res.Problems, err)
	}
	// The text log quotes the message; the problem's own words are in it.
	// The log comes through a pipe, so it may lag the API's answer a little.
	logged := func() bool {
		log := relay.Log()
		return strings.Contains(log, `stage 4 (httpflv-sink): lisen: unknown parameter`) && strings.Contains(log, "reload refused")
	}
	testrun.Eventually(t, testrun.WaitLimit, fmt.Sprintf("the refused reload's problem %q in the log", res.Problems[0]), logged)
	n1, n2 := v1.Count(), v2.Count()
	testrun.Eventually(t, 5*time.Second, "both viewers to go on after the refused reload", func() bool {
		return v1.Count() > n1+10 && v2.Count() > n2+10
	})

	// Remove the second edge: its viewer's response ends cleanly.
	rewrite(t, relay, one)
	hup(t, relay, "ok")
	tags2 := v2.Wait(t, 10*time.Second)
	if log := relay.Log(); !strings.Contains(log, `removed=[edge2]`) {
		t.Errorf("the reload's log line does not name the removed edge")
	}

	if err := push.Wait(); err != nil {
		t.Fatalf("push: %v\n%s", err, testmedia.Stderr(push))
	}
	tags1 := v1.Wait(t, 10*time.Second)
	assertInit(t, "first viewer", tags1, seqs)
	assertSuffix(t, "first viewer (one response through three reloads)", mediaTags(tags1), clipTags, len(clipTags)*2/3)
	assertInit(t, "second edge's viewer", tags2, seqs)
	assertRun(t, "second edge's viewer", mediaTags(tags2), clipTags, 30)
	if got := relay.Sum(t, "mediapipe_config_reloads_total", map[string]string{"result": "refused"}); got != 1 {
		t.Errorf("refused reloads = %v, want 1", got)
	}
	t.Logf("first viewer: %d of the clip's %d media tags in one response; second edge's viewer: %d tags, from add to removal",
		len(mediaTags(tags1)), len(clipTags), len(mediaTags(tags2)))
}
