package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// inNetnsEnv marks the copy of this test binary that runs inside the network
// namespace the multicast test creates.
const inNetnsEnv = "MEDIAPIPE_E2E_IN_NETNS"

// TestMulticastTwoEdges: the cloud sends to a multicast group; two edges
// joined to it each serve the stream byte-identical. It runs inside a fresh
// network namespace so the group traffic stays off every real interface.
func TestMulticastTwoEdges(t *testing.T) {
	relayTest(t)
	if os.Getenv(inNetnsEnv) == "" {
		unshare, err := exec.LookPath("unshare")
		if err != nil {
			t.Skip("needs unshare(1) to make a network namespace; not found")
		}
		if _, err := exec.LookPath("ip"); err != nil {
			t.Skip("needs ip(8) to set up lo in the namespace; not found")
		}
		if out, err := exec.Command(unshare, "-n", "true").CombinedOutput(); err != nil {
			t.Skipf("cannot create a network namespace here (needs root or user namespaces): %v: %s", err, bytes.TrimSpace(out))
		}
		cmd := exec.Command(unshare, "-n", "--", os.Args[0], "-test.run=^TestMulticastTwoEdges$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), inNetnsEnv+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte("--- PASS: TestMulticastTwoEdges")) {
			t.Fatalf("inside the namespace: %v\n%s", err, out)
		}
		return
	}
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "set", "lo", "multicast", "on"},
		{"route", "add", "224.0.0.0/4", "dev", "lo", "src", "127.0.0.1"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}

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
