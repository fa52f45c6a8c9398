package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/internal/relaytoml"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// branchAddrs are a relay with a second edge tier: the first edge's relay
// branch serves repairs on RTX2 and sends to the second edge at UDP2, which
// serves viewers on HTTP2.
type branchAddrs struct {
	addrs
	RTX2, UDP2, HTTP2 string
}

func newBranchAddrs(t *testing.T) branchAddrs {
	return branchAddrs{addrs: newAddrs(t), RTX2: testrun.FreeUDP(t), UDP2: testrun.FreeUDP(t), HTTP2: testrun.FreeTCP(t)}
}

// branchedEdgeTOML is an edge whose rtp-reorder ("ordered") and
// flv-reassembler ("repaired") feed, besides its own httpflv-sink, a
// recording into dir and a relay onward (quic-retransmit → udp-sink) to a
// second edge; extra is more TOML appended (another branch).
func branchedEdgeTOML(a branchAddrs, dir, extra string) string {
	edge := relaytoml.Relay{UDP: a.UDP, RTX: a.RTX, HTTP: a.HTTP, Latency: 300 * time.Millisecond,
		ReorderID: "ordered", ReassemblerID: "repaired"}.Edge()
	return edge + fmt.Sprintf(`
[[pipeline]]
name = "archive"
from = "repaired"
  [[pipeline.stage]]
  use = "flv-file-sink"
  dir = %q

[[pipeline]]
name = "relay"
from = "ordered"
  [[pipeline.stage]]
  use = "quic-retransmit"
  listen = %q
  [[pipeline.stage]]
  use = "udp-sink"
  destinations = [%q]
%s`, dir, a.RTX2, a.UDP2, extra)
}

// secondEdgeTOML is a plain edge fed by the first edge's relay branch.
func secondEdgeTOML(a branchAddrs) string {
	return edgeTOML("edge2", addrs{UDP: a.UDP2, RTX: a.RTX2, HTTP: a.HTTP2}, "", "")
}

// branchRelay is what one run of the branched relay delivered.
type branchRelay struct {
	viewer, viewer2 [][]byte // every tag each viewer read
	recording       string   // the recording's path
}

// runBranchRelay publishes the clip into the cloud and returns once both
// viewers' responses ended and stop (which stops the first edge, so its
// recording is finished) returned.
func runBranchRelay(t *testing.T, a branchAddrs, clip, dir string, stop func()) branchRelay {
	t.Helper()
	push := testmedia.Push(t, context.Background(), clip, "rtmp://"+a.RTMP+"/live/tee", true)
	url, url2 := "http://"+a.HTTP+"/live/tee.flv", "http://"+a.HTTP2+"/live/tee.flv"
	testrun.WaitPlayable(t, url, 5*time.Second)
	testrun.WaitPlayable(t, url2, 5*time.Second)
	v, v2 := testrun.Watch(url), testrun.Watch(url2)
	if err := push.Wait(); err != nil {
		t.Fatalf("push: %v\n%s", err, testmedia.Stderr(push))
	}
	// The stream's end reaches every branch: it ends both viewers' responses
	// (the second edge's through the relay branch) and the recording.
	r := branchRelay{viewer: v.Wait(t, 15*time.Second), viewer2: v2.Wait(t, 15*time.Second)}
	stop()
	files, _ := filepath.Glob(filepath.Join(dir, "live", "tee-*.flv"))
	if len(files) != 1 {
		t.Fatalf("recordings %v, want one", files)
	}
	r.recording = files[0]
	return r
}

// check compares what the relay delivered with the clip, tag by tag: each
// viewer from where it joined, the recording whole.
func (r branchRelay) check(t *testing.T, clip string) {
	t.Helper()
	all := testmedia.Tags(t, clip)
	clipTags, seqs := mediaTags(all), sequenceHeaders(all)
	assertInit(t, "first edge's viewer", r.viewer, seqs)
	assertSuffix(t, "first edge's viewer", mediaTags(r.viewer), clipTags, len(clipTags)/2)
	assertInit(t, "second edge's viewer", r.viewer2, seqs)
	assertSuffix(t, "second edge's viewer", mediaTags(r.viewer2), clipTags, len(clipTags)/2)
	recorded := mediaTags(testmedia.Tags(t, r.recording))
	assertSuffix(t, "recording", recorded, clipTags, len(clipTags))
	t.Logf("clip %d media tags: viewer %d, second edge's viewer %d, recording %d, each byte-identical to the clip's",
		len(clipTags), len(mediaTags(r.viewer)), len(mediaTags(r.viewer2)), len(recorded))
}

// TestBranchesRecordAndRelayOnward is issue 12's relay, as processes: a
// cloud, an edge whose repaired output feeds its viewers, a recording and a
// relay branch, and a second edge fed by that branch. The first edge's
// viewer, its recording and the second edge's viewer each hold exactly
// the clip's tags from where they joined.
func TestBranchesRecordAndRelayOnward(t *testing.T) {
	relayTest(t)
	clip := testmedia.Clip(t, clipOpts)
	a := newBranchAddrs(t)
	dir := t.TempDir()
	testrun.StartProcess(t, "cloud.toml", cloudTOML(a.addrs), nil)
	testrun.StartProcess(t, "edge2.toml", secondEdgeTOML(a), nil)
	edge := testrun.StartProcess(t, "edge.toml", branchedEdgeTOML(a, dir, ""), nil)
	r := runBranchRelay(t, a, clip, dir, func() {
		if err := edge.Stop(); err != nil {
			t.Errorf("edge: %v", err)
		}
	})
	r.check(t, clip)
}

// stallSink is a sink that reads nothing until release is closed, then
// records which stream events reached it.
type stallSink struct {
	release chan struct{}
	mu      *sync.Mutex
	events  *[]string
}

func (s stallSink) Run(_ context.Context, in <-chan *core.Packet, _ core.Output) error {
	<-s.release
	for p := range in {
		if p.Event != core.EventData {
			s.mu.Lock()
			*s.events = append(*s.events, p.Event.String()+" "+p.Stream.Name)
			s.mu.Unlock()
		}
		p.Release()
	}
	return nil
}

type stallConfig struct{}

// TestStalledBranchCostsTheOthersNothing is the same relay with one more
// branch off "repaired" whose sink reads nothing for the whole stream (the
// first edge runs in the test process, to hold that sink): the viewers and
// the recording lose nothing, the stalled branch's packets are dropped and
// counted, and it still gets the stream's start and end.
func TestStalledBranchCostsTheOthersNothing(t *testing.T) {
	relayTest(t)
	clip := testmedia.Clip(t, clipOpts)
	a := newBranchAddrs(t)
	dir := t.TempDir()
	release := make(chan struct{})
	var mu sync.Mutex
	var events []string
	reg := core.Default.Clone()
	if err := reg.Add(core.Define(core.Spec{Name: "stall-sink", Summary: "reads nothing until the test says", In: core.KindFLV},
		func(*stallConfig, *core.Env) (core.Stage, error) { return stallSink{release, &mu, &events}, nil })); err != nil {
		t.Fatal(err)
	}
	testrun.StartProcess(t, "cloud.toml", cloudTOML(a.addrs), nil)
	testrun.StartProcess(t, "edge2.toml", secondEdgeTOML(a), nil)
	stalled := "\n[[pipeline]]\nname = \"stalled\"\nfrom = \"repaired\"\nqueue = 16\n  [[pipeline.stage]]\n  use = \"stall-sink\"\n"
	edge := testrun.Start(t, "edge.toml", branchedEdgeTOML(a, dir, stalled), nil, testrun.Registry(reg))
	var once sync.Once
	unstall := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unstall) // before the edge's own cleanup stops it

	var full, mainDrops float64
	r := runBranchRelay(t, a, clip, dir, func() {
		full = edge.RT.CounterSum("mediapipe_stage_drops_total", map[string]string{"pipeline": "stalled", "reason": "branch_full"})
		for _, p := range []string{"edge", "archive", "relay"} {
			mainDrops += edge.RT.CounterSum("mediapipe_stage_drops_total", map[string]string{"pipeline": p, "reason": "queue_full"})
			mainDrops += edge.RT.CounterSum("mediapipe_stage_drops_total", map[string]string{"pipeline": p, "reason": "branch_full"})
		}
		unstall()
		testrun.Eventually(t, 5*time.Second, "the stalled branch to get the stream's end once it reads", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(events) == 2
		})
		if err := edge.Stop(); err != nil {
			t.Errorf("edge: %v", err)
		}
	})
	r.check(t, clip)
	clipTags := len(mediaTags(testmedia.Tags(t, clip)))
	t.Logf("stalled branch (queue 16): %v packets dropped as branch_full of the clip's %d tags; the other pipelines dropped %v", full, clipTags, mainDrops)
	if full < float64(clipTags)/2 {
		t.Errorf("branch_full = %v, want most of the clip's %d tags (the branch read nothing)", full, clipTags)
	}
	if mainDrops != 0 {
		t.Errorf("the edge's other pipelines dropped %v packets", mainDrops)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"start live/tee", "end live/tee"}; fmt.Sprint(events) != fmt.Sprint(want) {
		t.Errorf("stalled branch saw events %q, want %q", events, want)
	}
}
