package e2e

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// The tests in this file run the cloud and the edge as two `mediapipe run`
// processes, as a user deploys them, each on its own pipeline file.

// joinSlack is how long after a viewer's start its ffmpeg may take to connect
// on a busy machine: packets this far past the start must all arrive.
const joinSlack = 1500 * time.Millisecond

// TestLateEdge: an edge process started 3 s after the publisher still serves
// a playable stream — init tags fetched from the cloud, then every packet
// from the viewer's join on, exactly the clip's.
func TestLateEdge(t *testing.T) {
	relayTest(t)
	clip := testmedia.Clip(t, clipOpts)
	all := testmedia.Tags(t, clip)
	clipTags, seqs := mediaTags(all), sequenceHeaders(all)
	clipFrames := testmedia.FrameMD5(t, clip)
	a := newAddrs(t)
	testrun.Binary(t) // built before the clock starts
	cloud := testrun.StartProcess(t, "cloud.toml", cloudTOML(a), nil)

	pushed := time.Now()
	push := testmedia.Push(t, context.Background(), clip, "rtmp://"+a.RTMP+"/live/late", true)
	time.Sleep(3*time.Second - time.Since(pushed)) // the point of the test: the edge misses the stream's start
	edgeAt := time.Since(pushed)
	edge := testrun.StartProcess(t, "edge.toml", edgeTOML("edge", a, "", ""), nil)
	url := "http://" + a.HTTP + "/live/late.flv"
	testrun.WaitPlayable(t, url, 5*time.Second)
	v := testrun.Watch(url)
	joined := time.Since(pushed)
	rec := watchFFmpeg(t, url)
	if err := push.Wait(); err != nil {
		t.Fatalf("push: %v\n%s", err, testmedia.Stderr(push))
	}
	t.Logf("edge started %.1f s after the publisher; viewers joined at %.1f s of the %d s clip",
		edgeAt.Seconds(), joined.Seconds(), clipOpts.Seconds)

	tags := v.Wait(t, 10*time.Second)
	assertInit(t, "late viewer", tags, seqs)
	assertSuffix(t, "late viewer", mediaTags(tags), clipTags, len(clipTags)/5)
	rec.check(t, "late ffmpeg viewer", clipFrames, framesFrom(clipFrames, (joined+joinSlack).Milliseconds()))

	if err := edge.Stop(); err != nil {
		t.Errorf("edge: %v", err)
	}
	if err := cloud.Stop(); err != nil {
		t.Errorf("cloud: %v", err)
	}
}

// TestJunkAtEveryListener throws junk at every listener of a cloud and an
// edge process while a stream is relayed: the stream arrives intact, both
// processes stay up and serve a new publisher and viewer, and both still
// stop cleanly on SIGTERM.
func TestJunkAtEveryListener(t *testing.T) {
	relayTest(t)
	clip := testmedia.Clip(t, clipOpts)
	clipTags := mediaTags(testmedia.Tags(t, clip))
	clipFrames := testmedia.FrameMD5(t, clip)
	a := newAddrs(t)
	cloud := testrun.StartProcess(t, "cloud.toml", cloudTOML(a), nil)
	edge := testrun.StartProcess(t, "edge.toml", edgeTOML("edge", a, "", ""), nil)
	url := "http://" + a.HTTP + "/live/junk.flv"
	push := testmedia.Push(t, context.Background(), clip, "rtmp://"+a.RTMP+"/live/junk", true)
	testrun.WaitPlayable(t, url, 5*time.Second)
	v := testrun.Watch(url)
	rec := watchFFmpeg(t, url)

	junk := newJunk(1)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			junk.udp(a.UDP)               // random datagrams and RTP/RTCP with unknown SSRCs at the edge
			junk.udp(a.RTX)               // random datagrams at the QUIC port
			junk.tcp(a.RTMP)              // random bytes at the RTMP port
			junk.tcp(a.HTTP)              // and at the HTTP-FLV port
			junk.http("http://" + a.HTTP) // odd paths and methods
			for _, admin := range []string{cloud.Admin, edge.Admin} {
				junk.tcp(admin)
				junk.http("http://" + admin)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	if err := push.Wait(); err != nil {
		t.Fatalf("push: %v\n%s", err, testmedia.Stderr(push))
	}
	close(stop)
	wg.Wait()
	assertSuffix(t, "viewer under junk", mediaTags(v.Wait(t, 10*time.Second)), clipTags, len(clipTags)/2)
	rec.check(t, "ffmpeg viewer under junk", clipFrames, len(clipFrames)/2)

	for _, p := range []*testrun.Process{cloud, edge} {
		if !p.Alive() {
			t.Fatalf("%s (pid %d) did not survive the junk", p.Name, p.PID)
		}
	}
	if n := edge.Sum(t, "mediapipe_stage_drops_total", map[string]string{"stage": "udp-source"}); n == 0 {
		t.Errorf("edge's udp-source counted no junk")
	}
	if n := cloud.Sum(t, "mediapipe_stage_drops_total", map[string]string{"stage": "rtmp-source"}); n == 0 {
		t.Errorf("cloud's rtmp-source counted none of the junk connections")
	}
	// Both processes still serve a new publisher and a new viewer...
	push2 := testmedia.Push(t, context.Background(), clip, "rtmp://"+a.RTMP+"/live/after", true)
	url2 := "http://" + a.HTTP + "/live/after.flv"
	testrun.WaitPlayable(t, url2, 5*time.Second)
	v2 := testrun.Watch(url2)
	for deadline := time.Now().Add(5 * time.Second); v2.Count() < 30; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("a viewer after the junk got %d tags in 5 s", v2.Count())
		}
	}
	// ...and stop cleanly on SIGTERM with that stream live: both exit 0.
	if err := edge.Stop(); err != nil {
		t.Errorf("edge: %v", err)
	}
	// How the live viewer's response ended is the sink's business (it
	// currently resets live viewers at shutdown); logged for whoever looks.
	if err := v2.Err(); err != nil {
		t.Logf("viewer of the live stream at the edge's shutdown: %v", err)
	}
	if err := cloud.Stop(); err != nil {
		t.Errorf("cloud: %v", err)
	}
	_ = push2.Wait() // the cloud went away under it
}
