package host

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/control"
)

// Controller is one running transmission controller (a cloud's
// fec-encoder) with its latest round, in GET /api/control.
type Controller struct {
	Pipeline string        `json:"pipeline"`
	Position int           `json:"position"`
	Stage    string        `json:"stage"`
	Tick     *control.Tick `json:"tick"` // null before the first round
}

// ControlStatus collects every running stage that implements
// control.Reporter.
func (rt *Runtime) ControlStatus() []Controller {
	out := []Controller{}
	for _, p := range rt.Running() {
		for _, rs := range p.Stages {
			r, ok := rs.Stage.(control.Reporter)
			if !ok {
				continue
			}
			c := Controller{Pipeline: p.Name, Position: rs.Env.Index, Stage: rs.Env.Name}
			if t, ok := r.LastTick(); ok {
				c.Tick = &t
			}
			out = append(out, c)
		}
	}
	return out
}

func (rt *Runtime) serveControl(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"controllers": rt.ControlStatus()})
}

// The controller's families: made at each scrape from each controller's
// latest round, so a stream's series end with it and the edge label is
// bounded by max_peers (quic-retransmit's edge IDs).
var (
	famControlOverhead = core.Family{Name: "mediapipe_control_overhead", Type: "gauge", Labels: []string{"pipeline", "stream"},
		Help: "FEC overhead (parity packets per source packet) the transmission controller decided for the stream at its last round."}
	famControlPace = core.Family{Name: "mediapipe_control_pace_bytes_per_second", Type: "gauge", Labels: []string{"pipeline", "stream"},
		Help: "Pacing rate the transmission controller decided for the stream's bursts at udp-sink (0: not paced)."}
	famControlShare = core.Family{Name: "mediapipe_control_repair_share", Type: "gauge", Labels: []string{"pipeline", "edge"},
		Help: "Share (0–1) of quic-retransmit's repair budget the transmission controller gives the edge; edge is its ID in GET /api/edges."}
)

func init() {
	for _, f := range []core.Family{famControlOverhead, famControlPace, famControlShare} {
		core.RegisterFamily(f)
	}
}

type controlCollector struct {
	rt                    *Runtime
	overhead, pace, share *prometheus.Desc
}

func registerControlMetrics(rt *Runtime) {
	c := &controlCollector{rt: rt, overhead: desc(famControlOverhead), pace: desc(famControlPace), share: desc(famControlShare)}
	if err := rt.Metrics.Registry.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			rt.log.Error("controller metrics not exported", "err", err)
		}
	}
}

func (c *controlCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.overhead
	ch <- c.pace
	ch <- c.share
}

func (c *controlCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	pipelines := map[string]bool{}
	for _, ctl := range c.rt.ControlStatus() {
		// One controller per pipeline in the series (a second is unusual:
		// it shows in GET /api/control only), since duplicates would fail
		// the whole scrape.
		if ctl.Tick == nil || pipelines[ctl.Pipeline] {
			continue
		}
		pipelines[ctl.Pipeline] = true
		seen := map[string]bool{}
		for _, s := range ctl.Tick.Input.Streams {
			d, ok := ctl.Tick.Decision.Streams[s.SSRC]
			if !ok || seen[s.Stream] { // two streams of one name: the first
				continue
			}
			seen[s.Stream] = true
			gauge(c.overhead, d.Overhead, ctl.Pipeline, s.Stream)
			gauge(c.pace, d.PaceBytesPerSecond, ctl.Pipeline, s.Stream)
		}
		connected := map[int]bool{}
		for _, id := range ctl.Tick.Input.Edges {
			connected[id] = true
		}
		for id, share := range ctl.Tick.Decision.RepairShares {
			if connected[id] {
				gauge(c.share, share, ctl.Pipeline, strconv.Itoa(id))
			}
		}
	}
}
