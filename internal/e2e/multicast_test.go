package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// TestMulticastTwoEdges: the cloud sends to a multicast group; two edges
// joined to it each serve the stream byte-identical. It runs inside a fresh
// network namespace so the group traffic stays off every real interface.
func TestMulticastTwoEdges(t *testing.T) {
	relayTest(t)
	if !testrun.InNetns(t, "TestMulticastTwoEdges") {
		return
	}
	testrun.MulticastOnLo(t)

	clip := testmedia.Clip(t, clipOpts)
	all := testmedia.Tags(t, clip)
	clipTags, seqs := mediaTags(all), sequenceHeaders(all)
	clipFrames := testmedia.FrameMD5(t, clip)
	group := "239.9.9.9:" + strings.Split(testrun.FreeUDP(t), ":")[1]
	a := newAddrs(t)
	a.UDP = group
	testrun.Start(t, "cloud.toml", cloudTOML(a), nil)
	var urls []string
	for i := 1; i <= 2; i++ {
		e := a
		e.HTTP = testrun.FreeTCP(t)
		testrun.Start(t, fmt.Sprintf("edge%d.toml", i), edgeTOML(fmt.Sprintf("edge%d", i), e, "", ""), nil)
		urls = append(urls, "http://"+e.HTTP+"/live/mc.flv")
	}
	push := testmedia.Push(t, context.Background(), clip, "rtmp://"+a.RTMP+"/live/mc", true)
	var viewers []*testrun.Viewer
	var players []*ffViewer
	for _, url := range urls {
		testrun.WaitPlayable(t, url, 5*time.Second)
		viewers = append(viewers, testrun.Watch(url))
		players = append(players, watchFFmpeg(t, url))
	}
	if err := push.Wait(); err != nil {
		t.Fatalf("push: %v\n%s", err, testmedia.Stderr(push))
	}
	for i, v := range viewers {
		who := fmt.Sprintf("edge %d viewer", i+1)
		tags := v.Wait(t, 10*time.Second)
		assertInit(t, who, tags, seqs)
		assertSuffix(t, who, mediaTags(tags), clipTags, len(clipTags)/2)
		players[i].check(t, fmt.Sprintf("edge %d ffmpeg viewer", i+1), clipFrames, len(clipFrames)/2)
	}
}
