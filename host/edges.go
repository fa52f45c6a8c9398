package host

import (
	"errors"
	"net/http"
	"slices"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediapipe/mediapipe/core"
)

// EdgeServer is one running stage that hears edges' reports (a cloud's
// quic-retransmit), in GET /api/edges.
type EdgeServer struct {
	Pipeline string                `json:"pipeline"`
	Position int                   `json:"position"`
	Stage    string                `json:"stage"`
	Edges    []core.Edge           `json:"edges"`
	Streams  []core.EdgePopulation `json:"streams"` // each stream over the edges reporting it
}

// EdgesStatus collects the edges of every running stage that implements
// core.EdgeReporter.
func (rt *Runtime) EdgesStatus() []EdgeServer {
	out := []EdgeServer{}
	for _, p := range rt.Running() {
		for _, rs := range p.Stages {
			r, ok := rs.Stage.(core.EdgeReporter)
			if !ok {
				continue
			}
			edges := r.Edges()
			for i := range edges {
				if edges[i].Streams == nil {
					edges[i].Streams = []core.EdgeStream{}
				}
			}
			out = append(out, EdgeServer{Pipeline: p.Name, Position: rs.Env.Index, Stage: rs.Env.Name,
				Edges: edges, Streams: core.EdgePopulations(edges)})
		}
	}
	return out
}

func (rt *Runtime) serveEdges(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"servers": rt.EdgesStatus()})
}

// The per-edge families: made at each scrape from the edges connected now,
// so a series ends when its edge goes, and the edge label (its ID, reused
// after it goes) is bounded by max_peers.
var (
	edgeLabels          = []string{"pipeline", "edge", "stream"}
	famEdgeFractionLost = core.Family{Name: "mediapipe_edge_fraction_lost", Type: "gauge", Labels: edgeLabels,
		Help: "Fraction of the stream's packets lost on the way to the edge (before repair) in its last report's interval, 0–1; edge is the connection's ID (0 … max_peers-1) in GET /api/edges."}
	famEdgeRTT = core.Family{Name: "mediapipe_edge_rtt_seconds", Type: "gauge", Labels: edgeLabels,
		Help: "Round trip cloud → edge → cloud from the edge's last report (RFC 3550 LSR/DLSR)."}
	famEdgeJitter = core.Family{Name: "mediapipe_edge_jitter_seconds", Type: "gauge", Labels: edgeLabels,
		Help: "Interarrival jitter of the stream at the edge (RFC 3550), from its last report."}
	famEdgeDelivery = core.Family{Name: "mediapipe_edge_delivery_bytes_per_second", Type: "gauge", Labels: edgeLabels,
		Help: "Bytes per second of the stream the edge passed on (received or repaired), from its last report."}
	famEdgeRepaired = core.Family{Name: "mediapipe_edge_repaired_packets", Type: "gauge", Labels: edgeLabels,
		Help: "Packets of the stream the edge had repaired in time since it began receiving it, as its last report says (the edge's count: it restarts when the edge does)."}
	famEdgeSkipped = core.Family{Name: "mediapipe_edge_skipped_packets", Type: "gauge", Labels: edgeLabels,
		Help: "Packets of the stream the edge gave up on (gaps skipped unrepaired) since it began receiving it, as its last report says."}
	famEdgeWait = core.Family{Name: "mediapipe_edge_repair_wait_seconds", Type: "gauge", Labels: append(slices.Clone(edgeLabels), "stat"),
		Help: "How long the edge's repaired gaps waited for their repair over its last report's interval, by stat: mean, max."}
	popLabels     = []string{"pipeline", "stream", "stat"}
	popHelp       = " over the edges reporting the stream, by stat: mean, stddev, p90."
	famPopLoss    = core.Family{Name: "mediapipe_edges_fraction_lost", Type: "gauge", Labels: popLabels, Help: "Fraction lost" + popHelp}
	famPopRTT     = core.Family{Name: "mediapipe_edges_rtt_seconds", Type: "gauge", Labels: popLabels, Help: "Round trip" + popHelp}
	famPopDeliver = core.Family{Name: "mediapipe_edges_delivery_bytes_per_second", Type: "gauge", Labels: popLabels, Help: "Delivery rate" + popHelp}
)

func init() {
	for _, f := range []core.Family{famEdgeFractionLost, famEdgeRTT, famEdgeJitter, famEdgeDelivery, famEdgeRepaired, famEdgeSkipped, famEdgeWait,
		famPopLoss, famPopRTT, famPopDeliver} {
		core.RegisterFamily(f)
	}
}

type edgeCollector struct {
	rt                          *Runtime
	loss, rtt, jitter, delivery *prometheus.Desc
	repaired, skipped, wait     *prometheus.Desc
	popLoss, popRTT, popDeliver *prometheus.Desc
}

func registerEdgeMetrics(rt *Runtime) {
	c := &edgeCollector{rt: rt, loss: desc(famEdgeFractionLost), rtt: desc(famEdgeRTT), jitter: desc(famEdgeJitter),
		delivery: desc(famEdgeDelivery), repaired: desc(famEdgeRepaired), skipped: desc(famEdgeSkipped), wait: desc(famEdgeWait),
		popLoss: desc(famPopLoss), popRTT: desc(famPopRTT), popDeliver: desc(famPopDeliver)}
	if err := rt.Metrics.Registry.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			rt.log.Error("per-edge metrics not exported", "err", err)
		}
	}
}

func (c *edgeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.loss, c.rtt, c.jitter, c.delivery, c.repaired, c.skipped, c.wait, c.popLoss, c.popRTT, c.popDeliver} {
		ch <- d
	}
}

func (c *edgeCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	pipelines := map[string]bool{}
	for _, srv := range c.rt.EdgesStatus() {
		// The series are labelled by pipeline: a second repair server in
		// one pipeline (unusual) shows in GET /api/edges only, since
		// duplicate series would fail the whole scrape.
		if pipelines[srv.Pipeline] {
			continue
		}
		pipelines[srv.Pipeline] = true
		// Two streams of one name on one edge (a standby's SSRC while the
		// old one is still reported) would be one series: the newest wins.
		type key struct {
			edge   int
			stream string
		}
		latest := map[key]core.EdgeStream{}
		for _, e := range srv.Edges {
			for _, r := range e.Streams {
				k := key{e.ID, r.Stream}
				if old, ok := latest[k]; !ok || r.At.After(old.At) {
					latest[k] = r
				}
			}
		}
		for k, r := range latest {
			id := strconv.Itoa(k.edge)
			gauge(c.loss, r.FractionLost, srv.Pipeline, id, r.Stream)
			gauge(c.jitter, r.JitterMS/1000, srv.Pipeline, id, r.Stream)
			gauge(c.delivery, float64(r.DeliveryBps), srv.Pipeline, id, r.Stream)
			gauge(c.repaired, float64(r.Repaired), srv.Pipeline, id, r.Stream)
			gauge(c.skipped, float64(r.Skipped), srv.Pipeline, id, r.Stream)
			gauge(c.wait, r.WaitMeanMS/1000, srv.Pipeline, id, r.Stream, "mean")
			gauge(c.wait, r.WaitMaxMS/1000, srv.Pipeline, id, r.Stream, "max")
			if r.RTTSeconds > 0 {
				gauge(c.rtt, r.RTTSeconds, srv.Pipeline, id, r.Stream)
			}
		}
		seen := map[string]bool{}
		for _, p := range srv.Streams {
			if seen[p.Stream] {
				continue
			}
			seen[p.Stream] = true
			for _, x := range []struct {
				d *prometheus.Desc
				s core.Spread
			}{{c.popLoss, p.FractionLost}, {c.popRTT, p.RTTSeconds}, {c.popDeliver, p.DeliveryBps}} {
				if x.s.N == 0 {
					continue
				}
				gauge(x.d, x.s.Mean, srv.Pipeline, p.Stream, "mean")
				gauge(x.d, x.s.StdDev, srv.Pipeline, p.Stream, "stddev")
				gauge(x.d, x.s.P90, srv.Pipeline, p.Stream, "p90")
			}
		}
	}
}
