package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/internal/relaytoml"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// TestMulticastEdgesInNetns shows the multicast claim of issue 17 on real
// sockets: a cloud process sends one multicast group over a bridge to
// several edge processes, each in a network namespace of its own with a
// loss of its own (netsim, distinct seeds) before its fec-decoder. Every
// edge's viewer gets every tag of the clip intact (byte for byte), and the
// cloud sent each media and parity packet once, not once per edge.
//
// The test runs inside a fresh namespace (testrun.InNetns) holding the
// bridge and the cloud; the edges' namespaces are made with ip netns add
// and deleted when the test ends, failed or not. Killed, it leaves no
// names on the host: InNetns gives it a /run/netns of its own where it
// can, and names an earlier killed run left (mp17-PID-…, PID gone) are
// deleted first.
func TestMulticastEdgesInNetns(t *testing.T) {
	const netnsPrefix = "mp17-" // + PID-…: the names only this test makes
	testmedia.NeedFFmpeg(t)
	if testing.Short() {
		t.Skip("pushes real media through a cloud and three edge processes")
	}
	testrun.ClearStaleNetns(t, netnsPrefix)
	if !testrun.InNetns(t, "TestMulticastEdgesInNetns") {
		return
	}
	const (
		edges  = 3
		bridge = "mpbr"
		group  = "239.77.0.1:15400"
		hub    = "10.77.0.1"
	)
	testrun.IP(t, "link", "set", "lo", "up")
	testrun.IP(t, "link", "add", bridge, "type", "bridge", "mcast_snooping", "0")
	testrun.IP(t, "addr", "add", hub+"/24", "dev", bridge)
	testrun.IP(t, "link", "set", bridge, "up")
	testrun.IP(t, "route", "add", "224.0.0.0/4", "dev", bridge)

	type edge struct{ ns, ip, dev string }
	var es []edge
	for i := range edges {
		e := edge{ns: fmt.Sprintf("%s%d-e%d", netnsPrefix, os.Getpid(), i+1), ip: fmt.Sprintf("10.77.0.%d", 11+i), dev: fmt.Sprintf("ve%d", i+1)}
		if out, err := exec.Command("ip", "netns", "add", e.ns).CombinedOutput(); err != nil {
			t.Skipf("cannot create a named network namespace (ip netns add): %v: %s", err, out)
		}
		// Registered before the edge's process starts, so it runs after
		// the process's stop (cleanups run last first).
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", e.ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v: %s", e.ns, err, out)
			}
		})
		host := fmt.Sprintf("vh%d", i+1)
		testrun.IP(t, "link", "add", host, "type", "veth", "peer", "name", e.dev)
		testrun.IP(t, "link", "set", e.dev, "netns", e.ns)
		testrun.IP(t, "link", "set", host, "master", bridge)
		testrun.IP(t, "link", "set", host, "up")
		testrun.IP(t, "-n", e.ns, "link", "set", "lo", "up")
		testrun.IP(t, "-n", e.ns, "addr", "add", e.ip+"/24", "dev", e.dev)
		testrun.IP(t, "-n", e.ns, "link", "set", e.dev, "up")
		testrun.IP(t, "-n", e.ns, "route", "add", "224.0.0.0/4", "dev", e.dev)
		es = append(es, e)
	}

	rtmp, rtx := testrun.FreeTCP(t), hub+":15401"
	cloud := testrun.StartProcess(t, "cloud.toml", relaytoml.Relay{RTMP: rtmp, RTX: rtx, UDP: group, ReconnectGrace: "0s",
		// A fixed overhead: the test counts parity sent once, not what a policy would choose.
		BeforeSink: "\n  [[pipeline.stage]]\n  use = \"fec-encoder\"\n  policy = \"static\"\n  overhead = 0.2\n",
		SinkParams: fmt.Sprintf("  interface = %q\n  multicast_loopback = false\n", bridge)}.Cloud(), nil)

	var procs []*testrun.Process
	for i, e := range es {
		edgeTOML := relaytoml.Relay{UDP: group, RTX: rtx, HTTP: e.ip + ":8080", Latency: 300 * time.Millisecond,
			SourceParams:  fmt.Sprintf("  interface = %q\n  fec_payload_type = 101\n", e.dev),
			BeforeReorder: fmt.Sprintf("  [[pipeline.stage]]\n  use = \"netsim\"\n  drop = 0.05\n  seed = %d\n  [[pipeline.stage]]\n  use = \"fec-decoder\"\n", 101+i)}.Edge()
		procs = append(procs, testrun.StartProcess(t, e.ns+".toml", edgeTOML, nil, testrun.Netns(e.ns), testrun.AdminAt(e.ip+":9090")))
	}
	for i, p := range procs {
		testrun.Eventually(t, 10*time.Second, es[i].ns+"'s repair connection up", func() bool {
			return p.Sum(t, "mediapipe_stage_repair_connected", map[string]string{"stage": "rtp-reorder"}) == 1
		})
	}

	clip := testmedia.Clip(t, clipOpts)
	clipTags := mediaTags(testmedia.Tags(t, clip))
	push := testmedia.Push(t, context.Background(), clip, "rtmp://"+rtmp+"/live/mc", true)
	var viewers []*testrun.Viewer
	for _, e := range es {
		url := "http://" + e.ip + ":8080/live/mc.flv"
		testrun.WaitPlayable(t, url, 10*time.Second)
		viewers = append(viewers, testrun.Watch(url))
	}
	if err := push.Wait(); err != nil {
		t.Fatalf("ffmpeg push: %v\n%s", err, testmedia.Stderr(push))
	}
	for i, v := range viewers {
		got := mediaTags(v.Wait(t, 15*time.Second))
		assertSuffix(t, es[i].ns+"'s viewer", got, clipTags, len(clipTags)/2)
	}

	// What the cloud sent: each packet once to the group.
	sent := cloud.Sum(t, "mediapipe_stage_sent_datagrams_total", map[string]string{"stage": "udp-sink"})
	rtcp := cloud.Sum(t, "mediapipe_stage_sent_rtcp_packets_total", map[string]string{"stage": "udp-sink"})
	rtp := cloud.Sum(t, "mediapipe_stage_packets_out_total", map[string]string{"stage": "fec-encoder"})
	parity := cloud.Sum(t, "mediapipe_stage_fec_parity_sent_packets_total", map[string]string{"stage": "fec-encoder"})
	t.Logf("cloud: udp-sink sent %v datagrams (%v RTCP); fec-encoder passed %v RTP packets, %v of them parity", sent, rtcp, rtp, parity)
	if parity == 0 {
		t.Error("fec-encoder sent no parity")
	}
	// Every RTP packet once; RTCP is counted as it is queued, so the last
	// (a BYE) may be counted and not yet sent.
	if sent < rtp || sent > rtp+rtcp {
		t.Errorf("udp-sink sent %v datagrams, want each of the %v RTP packets once, with up to %v RTCP (%d edges would make %v)", sent, rtp, rtcp, edges, edges*rtp)
	}
	var losses []string
	for i, p := range procs {
		in := p.Sum(t, "mediapipe_stage_packets_out_total", map[string]string{"stage": "udp-source"})
		lost := p.Sum(t, "mediapipe_stage_drops_total", map[string]string{"stage": "netsim"})
		rec := p.Sum(t, "mediapipe_stage_fec_recovered_packets_total", map[string]string{"stage": "fec-decoder"})
		rep := p.Sum(t, "mediapipe_stage_repaired_packets_total", map[string]string{"stage": "rtp-reorder"})
		losses = append(losses, fmt.Sprintf("%s: received %v, netsim lost %v, FEC recovered %v, repaired %v", es[i].ns, in, lost, rec, rep))
		if in < 0.98*rtp {
			t.Errorf("%s's udp-source passed %v packets of the group's %v", es[i].ns, in, rtp)
		}
		if lost == 0 {
			t.Errorf("%s: netsim lost nothing; the test did not test loss", es[i].ns)
		}
	}
	t.Log(strings.Join(losses, "\n"))
}
