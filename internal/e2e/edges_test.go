package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/host"
	"github.com/mediapipe/mediapipe/internal/relaytoml"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// TestEdgeReports: two edges behind one cloud, each with its own netsim
// loss, report over their repair connections; the cloud's GET /api/edges
// shows each edge's loss near its drop rate and an RTT within a few
// seconds, the population's mean and spread follow both, and an edge that
// goes takes its state and its metric series with it.
func TestEdgeReports(t *testing.T) {
	clip := testmedia.Clip(t, testmedia.Options{Seconds: 12})
	udpA, udpB := testrun.FreeUDP(t), testrun.FreeUDP(t)
	rtmp, rtx, admin := testrun.FreeTCP(t), testrun.FreeUDP(t), testrun.FreeTCP(t)
	cloudText := relaytoml.Relay{RTMP: rtmp, RTX: rtx, Destinations: []string{udpA, udpB}, ReconnectGrace: "0s"}.Cloud() +
		fmt.Sprintf("\n[admin]\nlisten = %q\ntoken = %q\n", admin, apiToken)
	testrun.Start(t, "cloud.toml", cloudText, nil)
	drops := map[string]float64{udpA: 0.05, udpB: 0.20}
	testrun.Start(t, "a.toml", edgeTOML("edge-a", addrs{UDP: udpA, RTX: rtx, HTTP: testrun.FreeTCP(t)}, "  drop = 0.05\n  seed = 3", ""), nil)
	edgeB := testrun.Start(t, "b.toml", edgeTOML("edge-b", addrs{UDP: udpB, RTX: rtx, HTTP: testrun.FreeTCP(t)}, "  drop = 0.20\n  seed = 5", ""), nil)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	push := testmedia.Push(t, ctx, clip, "rtmp://"+rtmp+"/live/fb", true)
	defer func() { cancel(); _ = push.Wait() }()

	base := "http://" + admin
	edges := func() host.EdgeServer {
		t.Helper()
		code, _, body := api(t, http.MethodGet, base+"/api/edges", apiToken)
		if code != http.StatusOK {
			t.Fatalf("GET /api/edges: %d %s", code, body)
		}
		var v struct{ Servers []host.EdgeServer }
		if err := json.Unmarshal(body, &v); err != nil || len(v.Servers) != 1 {
			t.Fatalf("GET /api/edges: %v %s", err, body)
		}
		return v.Servers[0]
	}
	if code, _, _ := api(t, http.MethodGet, base+"/api/edges", ""); code != http.StatusUnauthorized {
		t.Fatalf("GET /api/edges without the token: %d", code)
	}

	// The first reports within ~3 s of the stream flowing, from both
	// edges, with an RTT.
	testrun.Eventually(t, 10*time.Second, "stream flowing", func() bool {
		return edgeB.RT.CounterSum("mediapipe_stage_packets_in_total", map[string]string{"stage": "rtp-reorder"}) > 0
	})
	start := time.Now()
	testrun.Eventually(t, 3*time.Second, "both edges report with an RTT", func() bool {
		s := edges()
		if len(s.Edges) != 2 {
			return false
		}
		for _, e := range s.Edges {
			if len(e.Streams) != 1 || e.Streams[0].Stream != "live/fb" || e.Streams[0].RTTSeconds <= 0 {
				return false
			}
		}
		return true
	})
	t.Logf("reports with RTT after %v", time.Since(start).Round(time.Millisecond))

	// Loss near each edge's drop rate: the mean fraction over 4 distinct
	// reports each (one interval holds some tens of packets).
	type acc struct {
		seen map[time.Time]bool
		sum  float64
		addr string
	}
	byID := map[int]*acc{}
	var last host.EdgeServer
	testrun.Eventually(t, 15*time.Second, "4 reports from each edge", func() bool {
		last = edges()
		done := len(last.Edges) == 2
		for _, e := range last.Edges {
			a := byID[e.ID]
			if a == nil {
				a = &acc{seen: map[time.Time]bool{}, addr: e.Addr}
				byID[e.ID] = a
			}
			for _, r := range e.Streams {
				if !a.seen[r.At] && len(a.seen) < 4 {
					a.seen[r.At] = true
					a.sum += r.FractionLost
				}
			}
			done = done && len(a.seen) >= 4
		}
		return done
	})
	means := make([]float64, 0, 2)
	for id, a := range byID {
		means = append(means, a.sum/4)
		t.Logf("edge %d (%s): mean fraction lost %.3f over 4 reports", id, a.addr, a.sum/4)
	}
	// Which edge is which: the lower loss is A's (5 %), the higher B's (20 %).
	lo, hi := min(means[0], means[1]), max(means[0], means[1])
	if lo < 0.02 || lo > 0.10 || hi < 0.12 || hi > 0.30 {
		t.Fatalf("fraction lost %.3f and %.3f, want about %.2f and %.2f", lo, hi, drops[udpA], drops[udpB])
	}

	for _, e := range last.Edges {
		r := e.Streams[0]
		t.Logf("edge %d: cumulative lost %d, repaired %d, skipped %d, rtt %.2f ms, jitter %.0f ms, delivery %d B/s",
			e.ID, r.CumulativeLost, r.Repaired, r.Skipped, r.RTTSeconds*1000, r.JitterMS, r.DeliveryBps)
	}
	// The population of the last snapshot: both edges, mean and spread of
	// their figures.
	if len(last.Streams) != 1 || last.Streams[0].Edges != 2 {
		t.Fatalf("population %+v", last.Streams)
	}
	p := last.Streams[0]
	l0, l1 := last.Edges[0].Streams[0].FractionLost, last.Edges[1].Streams[0].FractionLost
	if math.Abs(p.FractionLost.Mean-(l0+l1)/2) > 1e-9 || math.Abs(p.FractionLost.StdDev-math.Abs(l0-l1)/2) > 1e-9 {
		t.Fatalf("population loss %+v from %v and %v", p.FractionLost, l0, l1)
	}
	if p.RTTSeconds.N != 2 || p.RTTSeconds.Mean <= 0 || p.DeliveryBps.N != 2 || p.DeliveryBps.Mean <= 0 {
		t.Fatalf("population %+v", p)
	}
	metrics := func() string {
		_, _, body := api(t, http.MethodGet, base+"/metrics", apiToken)
		return string(body)
	}
	m := metrics()
	for _, fam := range []string{"mediapipe_edge_fraction_lost{", "mediapipe_edge_rtt_seconds{", "mediapipe_edge_jitter_seconds{", "mediapipe_edge_delivery_bytes_per_second{", "mediapipe_edge_repaired_packets{", "mediapipe_edge_skipped_packets{", `mediapipe_edge_repair_wait_seconds{`, `mediapipe_edges_fraction_lost{pipeline="cloud",stat="mean",stream="live/fb"}`} {
		if !strings.Contains(m, fam) {
			t.Fatalf("metrics lack %s", fam)
		}
	}

	// Edge B goes: its state and its series go with it; A stays.
	idB := -1
	for id, a := range byID {
		if a.sum/4 == hi {
			idB = id
		}
	}
	if err := edgeB.Stop(); err != nil {
		t.Fatal(err)
	}
	testrun.Eventually(t, 5*time.Second, "edge B forgotten", func() bool {
		s := edges()
		return len(s.Edges) == 1 && s.Edges[0].ID != idB
	})
	series := fmt.Sprintf(`edge="%d"`, idB)
	for _, line := range strings.Split(metrics(), "\n") {
		if strings.HasPrefix(line, "mediapipe_edge_") && strings.Contains(line, series) {
			t.Fatalf("series of the edge that went remain: %s", line)
		}
	}
	if s := edges(); s.Streams[0].Edges != 1 {
		t.Fatalf("population after B went: %+v", s.Streams)
	}
}
