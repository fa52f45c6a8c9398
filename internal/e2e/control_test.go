package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/host"
	"github.com/mediapipe/mediapipe/internal/relaytoml"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// TestControlLoop: a cloud with fec-encoder's controller on and an edge
// with fec-decoder, netsim loss before it. At 5 % loss loss-adaptive
// raises the stream's overhead from 0 within a few seconds of the first reports
// (GET /api/control shows it), the decoder recovers packets with the
// parity, and every tag reaches the viewer intact; at no loss the default
// policy takes the parity away.
func TestControlLoop(t *testing.T) {
	clip := testmedia.Clip(t, testmedia.Options{Seconds: 10})
	all := testmedia.Tags(t, clip)
	clipTags := mediaTags(all)
	cases := []struct {
		name, policy, netsim string
	}{
		{"5% loss, loss-adaptive", "loss-adaptive", "  drop = 0.05\n  seed = 17"},
		{"no loss, default policy", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			relayTest(t)
			a, admin := newAddrs(t), testrun.FreeTCP(t)
			pol := ""
			if tc.policy != "" {
				// From no parity at all (the fixed overhead, static's), so
				// a parity overhead above 0 is the controller's doing.
				pol = fmt.Sprintf("\n  policy = %q\n  overhead = 0.0", tc.policy)
			}
			ns := ""
			if tc.netsim != "" {
				ns = "  [[pipeline.stage]]\n  use = \"netsim\"\n" + tc.netsim + "\n"
			}
			// rtp-reorder's latency is generous (as edgeTOML's) so a busy
			// machine still repairs what parity does not recover.
			rl := relaytoml.Relay{RTMP: a.RTMP, RTX: a.RTX, UDP: a.UDP, HTTP: a.HTTP, ReconnectGrace: "0s",
				Latency:       300 * time.Millisecond,
				SourceParams:  "  fec_payload_type = 101\n",
				BeforeReorder: ns + "  [[pipeline.stage]]\n  use = \"fec-decoder\"\n",
				BeforeSink:    "\n  [[pipeline.stage]]\n  use = \"fec-encoder\"" + pol + "\n  group = 16\n  max_wait = \"40ms\"\n"}
			testrun.Start(t, "cloud.toml", rl.Cloud()+fmt.Sprintf("\n[admin]\nlisten = %q\ntoken = %q\n", admin, apiToken), nil)
			edge := testrun.Start(t, "edge.toml", rl.Edge(), nil)

			url := "http://" + a.HTTP + "/live/ctl.flv"
			push := testmedia.Push(t, context.Background(), clip, "rtmp://"+a.RTMP+"/live/ctl", true)
			testrun.WaitPlayable(t, url, 5*time.Second)
			viewer := testrun.Watch(url)

			tick := func() (host.Controller, bool) {
				code, _, body := api(t, http.MethodGet, "http://"+admin+"/api/control", apiToken)
				if code != http.StatusOK {
					t.Fatalf("GET /api/control: %d %s", code, body)
				}
				var v struct{ Controllers []host.Controller }
				if err := json.Unmarshal(body, &v); err != nil || len(v.Controllers) != 1 {
					t.Fatalf("GET /api/control: %v %s", err, body)
				}
				c := v.Controllers[0]
				return c, c.Tick != nil && len(c.Tick.Input.Streams) == 1 && len(c.Tick.Input.Streams[0].Edges) == 1
			}
			if code, _, _ := api(t, http.MethodGet, "http://"+admin+"/api/control", ""); code != http.StatusUnauthorized {
				t.Fatalf("GET /api/control without the token: %d", code)
			}
			start := time.Now()
			var last host.Controller
			testrun.Eventually(t, 8*time.Second, "the controller's decision", func() bool {
				c, ok := tick()
				if !ok {
					return false
				}
				last = c
				o := c.Tick.Decision.Streams[c.Tick.Input.Streams[0].SSRC].Overhead
				if tc.netsim != "" {
					return o > 0 && c.Tick.Input.Streams[0].Edges[0].FractionLost > 0
				}
				return o == 0
			})
			s := last.Tick.Input.Streams[0]
			t.Logf("after %v: %s overhead %.3f (edge's loss %.3f): %s", time.Since(start).Round(100*time.Millisecond),
				last.Tick.Policy, last.Tick.Decision.Streams[s.SSRC].Overhead, s.Edges[0].FractionLost, last.Tick.Decision.Reason)
			if tc.policy != "" && last.Tick.Policy != tc.policy || tc.policy == "" && last.Tick.Policy != "mean-field" {
				t.Errorf("policy %q", last.Tick.Policy)
			}

			_, _, metrics := api(t, http.MethodGet, "http://"+admin+"/metrics", apiToken)
			if want := `mediapipe_control_overhead{pipeline="cloud",stream="live/ctl"}`; !strings.Contains(string(metrics), want) {
				t.Errorf("metrics lack %s", want)
			}
			if err := push.Wait(); err != nil {
				t.Fatalf("ffmpeg push: %v\n%s", err, testmedia.Stderr(push))
			}
			got := mediaTags(viewer.Wait(t, 10*time.Second))
			assertSuffix(t, "viewer", got, clipTags, len(clipTags)/2)
			skipped := edge.RT.CounterSum("mediapipe_stage_drops_total", map[string]string{"stage": "rtp-reorder", "reason": "gap_skipped"})
			if skipped != 0 {
				t.Errorf("%v packets skipped unrepaired", skipped)
			}
			if tc.netsim != "" {
				lost := edge.RT.CounterSum("mediapipe_stage_drops_total", map[string]string{"stage": "netsim"})
				recovered := edge.RT.CounterSum("mediapipe_stage_fec_recovered_packets_total", nil)
				if lost == 0 || recovered == 0 {
					t.Errorf("netsim dropped %v packets, fec-decoder recovered %v: want both", lost, recovered)
				}
				t.Logf("netsim dropped %v packets, fec-decoder recovered %v, the rest repaired", lost, recovered)
			}
		})
	}
}
