package host

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediapipe/mediapipe/core"
)

// The per-stream families: what operators graph per stream. They are made
// at each scrape from the streams the pipelines carry now, so a series
// ends with its stream and their number is bounded by the live streams
// (max_publishers on the cloud, udp-source's stream limit on an edge).
var (
	famStreamInBytes = streamFamily("mediapipe_stream_in_bytes_total", "counter",
		"Bytes the pipeline's source received for the stream (RTMP media on a cloud, RTP on an edge).")
	famStreamInPackets = streamFamily("mediapipe_stream_in_packets_total", "counter",
		"Packets the pipeline's source handed on for the stream.")
	famStreamOutBytes = streamFamily("mediapipe_stream_out_bytes_total", "counter",
		"Bytes sent to the stream's viewers in the pipeline (HTTP-FLV and HLS), those that left included.")
	famStreamViewers = streamFamily("mediapipe_stream_viewers", "gauge",
		"Viewers of the stream in the pipeline now (HLS: clients that asked within a segment window).")
	famStreamStart = streamFamily("mediapipe_stream_start_time_seconds", "gauge",
		"When the stream started in the pipeline, Unix time (uptime: time() - this).")
	famStreamLost = streamFamily("mediapipe_stream_lost_packets_total", "counter",
		"Packets of the stream missing on arrival at the edge (gaps its rtp-reorder found).")
	famStreamRepaired = streamFamily("mediapipe_stream_repaired_packets_total", "counter",
		"Packets of the stream recovered from the cloud's cache in time.")
	famStreamLatency = streamFamily("mediapipe_stream_latency_seconds", "gauge",
		"How long after the cloud sent the stream's tags the edge had them ready for viewers, repair waits included (smoothed; by the cloud's RTCP sender reports, so the cloud's and the edge's clocks must agree, as NTP keeps them).")
	famStreamSkipped = streamFamily("mediapipe_stream_skipped_packets_total", "counter",
		"Packets of the stream given up on (not repaired within latency): gaps viewers see.")
)

// streamFamilies are listed in docs/metrics.md and described to the registry.
var streamFamilies = []core.Family{famStreamInBytes, famStreamInPackets, famStreamOutBytes, famStreamViewers, famStreamStart,
	famStreamLost, famStreamRepaired, famStreamSkipped, famStreamLatency}

func streamFamily(name, typ, help string) core.Family {
	return core.Family{Name: name, Type: typ, Labels: []string{"pipeline", "stream"}, Help: help}
}

func init() {
	for _, f := range streamFamilies {
		core.RegisterFamily(f)
	}
}

func desc(f core.Family) *prometheus.Desc { return prometheus.NewDesc(f.Name, f.Help, f.Labels, nil) }

// streamCollector makes the per-stream series of rt at each scrape.
type streamCollector struct {
	rt                                      *Runtime
	inBytes, inPackets, outBytes, viewers   *prometheus.Desc
	start, lost, repaired, skipped, latency *prometheus.Desc
}

func registerStreamMetrics(rt *Runtime) {
	c := &streamCollector{rt: rt, inBytes: desc(famStreamInBytes), inPackets: desc(famStreamInPackets),
		outBytes: desc(famStreamOutBytes), viewers: desc(famStreamViewers), start: desc(famStreamStart),
		lost: desc(famStreamLost), repaired: desc(famStreamRepaired), skipped: desc(famStreamSkipped),
		latency: desc(famStreamLatency)}
	if err := rt.Metrics.Registry.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			rt.log.Error("per-stream metrics not exported", "err", err)
		}
		// Another runtime on the same registry (tests) reports its own.
	}
}

func (c *streamCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, f := range streamFamilies {
		ch <- desc(f)
	}
}

func (c *streamCollector) Collect(ch chan<- prometheus.Metric) {
	audience := c.rt.Sessions.ViewerTotals()
	for _, p := range c.rt.Running() {
		// Two streams of one name (the old one draining while its
		// successor starts) are one series.
		type sums struct {
			bytes, packets uint64
			start          float64
		}
		byName := map[string]*sums{}
		for _, st := range p.Streams() {
			s := byName[st.Name]
			if s == nil {
				s = &sums{start: float64(st.Started.UnixNano()) / 1e9}
				byName[st.Name] = s
			}
			s.bytes += st.Bytes
			s.packets += st.Packets
			s.start = max(s.start, float64(st.Started.UnixNano())/1e9)
		}
		for name, s := range byName {
			ch <- prometheus.MustNewConstMetric(c.inBytes, prometheus.CounterValue, float64(s.bytes), p.Name, name)
			ch <- prometheus.MustNewConstMetric(c.inPackets, prometheus.CounterValue, float64(s.packets), p.Name, name)
			ch <- prometheus.MustNewConstMetric(c.start, prometheus.GaugeValue, s.start, p.Name, name)
			a := audience[core.StreamKey{Pipeline: p.Name, Stream: name}]
			ch <- prometheus.MustNewConstMetric(c.outBytes, prometheus.CounterValue, float64(a.Bytes), p.Name, name)
			ch <- prometheus.MustNewConstMetric(c.viewers, prometheus.GaugeValue, float64(a.Viewers), p.Name, name)
		}
		c.collectLoss(ch, p)
		c.collectLatency(ch, p)
	}
}

// collectLatency reports the latency a stage of p measures per stream (the
// largest, when two streams share a name).
func (c *streamCollector) collectLatency(ch chan<- prometheus.Metric, p *Pipeline) {
	byName := map[string]float64{}
	for _, rs := range p.Stages {
		r, ok := rs.Stage.(core.LatencyReporter)
		if !ok {
			continue
		}
		r.ReportLatency(func(stream string, l *core.StreamLatency) {
			if sec, ok := l.Seconds(); ok {
				byName[stream] = max(byName[stream], sec)
			}
		})
	}
	for name, sec := range byName {
		ch <- prometheus.MustNewConstMetric(c.latency, prometheus.GaugeValue, sec, p.Name, name)
	}
}

// collectLoss reports the loss its stages count per stream, summed over
// the pipeline's stages and over streams sharing a name.
func (c *streamCollector) collectLoss(ch chan<- prometheus.Metric, p *Pipeline) {
	type loss struct{ lost, repaired, skipped uint64 }
	byName := map[string]*loss{}
	for _, rs := range p.Stages {
		r, ok := rs.Stage.(core.LossReporter)
		if !ok {
			continue
		}
		r.ReportLoss(func(stream string, l *core.StreamLoss) {
			x := byName[stream]
			if x == nil {
				x = &loss{}
				byName[stream] = x
			}
			x.lost += l.Lost.Load()
			x.repaired += l.Repaired.Load()
			x.skipped += l.Skipped.Load()
		})
	}
	for name, x := range byName {
		ch <- prometheus.MustNewConstMetric(c.lost, prometheus.CounterValue, float64(x.lost), p.Name, name)
		ch <- prometheus.MustNewConstMetric(c.repaired, prometheus.CounterValue, float64(x.repaired), p.Name, name)
		ch <- prometheus.MustNewConstMetric(c.skipped, prometheus.CounterValue, float64(x.skipped), p.Name, name)
	}
}
