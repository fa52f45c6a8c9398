package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// dashboardQueries returns every PromQL expression of the Grafana
// dashboard (panels' targets and the variables' queries).
func dashboardQueries(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile("../../deploy/grafana/mediapipe.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("deploy/grafana/mediapipe.json: %v", err)
	}
	var out []string
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			out = append(out, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		out = append(out, v.Definition)
	}
	return out
}

// metricName finds the metric families a PromQL expression reads: names
// of ours or of the Go client's process collector.
var metricName = regexp.MustCompile(`\b(?:mediapipe|process|go)_[a-z0-9_]+\b`)

// TestDashboardMetricsExist: every metric the Grafana dashboard queries is
// in the /metrics of a running relay that has had a publisher, a viewer,
// loss and an isolated stage, so no panel of deploy/grafana stays empty
// for want of a family; and the per-stream families say what happened:
// one viewer, bytes in and out, loss found and repaired.
func TestDashboardMetricsExist(t *testing.T) {
	relayTest(t)
	var names []string
	for _, q := range dashboardQueries(t) {
		names = append(names, metricName.FindAllString(q, -1)...)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	if len(names) < 10 {
		t.Fatalf("the dashboard queries only %v", names)
	}

	clip := testmedia.Clip(t, testmedia.Options{Seconds: 8})
	a := newAddrs(t)
	edge := edgeTOML("edge", a, "  drop = 0.05\n  seed = 3", "")
	// An isolated stage, for the plugin restart counter (netsim: the
	// stages that measure per stream must run in the process).
	edge = strings.Replace(edge, "use = \"netsim\"", "use = \"netsim\"\n  isolate = true", 1)
	relay := testrun.StartProcess(t, "relay.toml", cloudTOML(a)+edge, nil)
	url := "http://" + a.HTTP + "/live/dash.flv"
	push := testmedia.Push(t, context.Background(), clip, "rtmp://"+a.RTMP+"/live/dash", true)
	testrun.WaitPlayable(t, url, 10*time.Second)
	v := testrun.Watch(url)
	edgeStream := map[string]string{"pipeline": "edge", "stream": "live/dash"}
	testrun.Eventually(t, 10*time.Second, "the viewer, loss and its repair in the per-stream metrics", func() bool {
		return v.Count() > 50 &&
			relay.Sum(t, "mediapipe_stream_viewers", edgeStream) == 1 &&
			relay.Sum(t, "mediapipe_stream_lost_packets_total", edgeStream) > 0 &&
			relay.Sum(t, "mediapipe_stream_repaired_packets_total", edgeStream) > 0 &&
			relay.Sum(t, "mediapipe_stream_latency_seconds", edgeStream) > 0 // after the cloud's first sender report
	})
	if in := relay.Sum(t, "mediapipe_stream_in_bytes_total", map[string]string{"pipeline": "cloud", "stream": "live/dash"}); in < 10000 {
		t.Errorf("cloud's bytes in for the stream: %v", in)
	}
	if out := relay.Sum(t, "mediapipe_stream_out_bytes_total", edgeStream); out < 10000 {
		t.Errorf("edge's bytes out for the stream: %v", out)
	}
	// Cloud and edge share a clock here: the latency is what the relay
	// adds, a repair's wait at most (latency 300ms in edgeTOML).
	if lat := relay.Sum(t, "mediapipe_stream_latency_seconds", edgeStream); lat <= 0 || lat > 0.5 {
		t.Errorf("edge's latency for the stream: %v s, want between 0 and 0.5", lat)
	} else {
		t.Logf("edge latency (smoothed, with 5%% loss repaired): %.1f ms", lat*1000)
	}

	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + relay.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	fams, err := testrun.ParseMetrics(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, f := range fams {
		have[f.GetName()] = len(f.GetMetric()) > 0
	}
	for _, n := range names {
		if !have[n] {
			t.Errorf("the dashboard queries %s, which the relay's /metrics does not have", n)
		}
	}
	if err := push.Wait(); err != nil {
		t.Fatalf("push: %v\n%s", err, testmedia.Stderr(push))
	}
	v.Wait(t, 10*time.Second)
	// The stream's series end with it.
	testrun.Eventually(t, 10*time.Second, "the per-stream series to end with the stream", func() bool {
		return relay.Sum(t, "mediapipe_stream_start_time_seconds", nil) == 0
	})
}
