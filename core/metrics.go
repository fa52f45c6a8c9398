package core

import (
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
)

// Metrics is the process's Prometheus registry with the counters every stage
// shares. Stages get their own labelled view through Stage.
type Metrics struct {
	Registry *prometheus.Registry

	packetsIn  *prometheus.CounterVec
	packetsOut *prometheus.CounterVec
	drops      *prometheus.CounterVec
	events     *prometheus.CounterVec
	gauges     *prometheus.GaugeVec
}

var stageLabels = []string{"pipeline", "position", "stage"}

// NewMetrics builds a registry with the Go and process collectors and the
// per-stage families.
func NewMetrics() *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry()}
	m.packetsIn = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mediapipe_stage_packets_in_total", Help: "Packets queued to the stage.",
	}, stageLabels)
	m.packetsOut = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mediapipe_stage_packets_out_total", Help: "Packets the stage emitted.",
	}, stageLabels)
	m.drops = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mediapipe_stage_drops_total", Help: "Packets or units dropped by the stage, by reason.",
	}, append(stageLabels, "reason"))
	m.events = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mediapipe_stage_events_total", Help: "Stage-specific counted events (repairs, restarts, viewers served, ...).",
	}, append(stageLabels, "event"))
	m.gauges = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "mediapipe_stage_gauge", Help: "Stage-specific current values (streams, viewers, peers, ...).",
	}, append(stageLabels, "name"))
	m.Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.packetsIn, m.packetsOut, m.drops, m.events, m.gauges,
	)
	return m
}

// Stage returns the metrics view of the stage at position index of pipeline.
func (m *Metrics) Stage(pipeline string, index int, name string) *StageMetrics {
	labels := []string{pipeline, strconv.Itoa(index), name}
	return &StageMetrics{
		m:      m,
		labels: labels,
		In:     m.packetsIn.WithLabelValues(labels...),
		Out:    m.packetsOut.WithLabelValues(labels...),
		log:    slog.Default(),
	}
}

// StageMetrics is one stage's labelled counters. Look counters up once, at
// build time, and keep them: Inc on a kept counter does not allocate.
type StageMetrics struct {
	m      *Metrics
	labels []string
	In     prometheus.Counter
	Out    prometheus.Counter

	mu    sync.Mutex
	drops map[string]*DropCounter
	log   *slog.Logger
}

// SetLogger sets the logger drop summaries go to.
func (s *StageMetrics) SetLogger(l *slog.Logger) { s.log = l }

// Drop returns the counter of packets dropped for reason. Each reason is one
// label value of mediapipe_stage_drops_total; drops are also logged, at most
// once per five seconds per reason, as a count.
func (s *StageMetrics) Drop(reason string) *DropCounter {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d, ok := s.drops[reason]; ok {
		return d
	}
	if s.drops == nil {
		s.drops = map[string]*DropCounter{}
	}
	d := &DropCounter{c: s.m.drops.WithLabelValues(append(append([]string{}, s.labels...), reason)...), reason: reason, log: s.log}
	s.drops[reason] = d
	return d
}

// Counter returns a counter of stage-specific events named event.
func (s *StageMetrics) Counter(event string) prometheus.Counter {
	return s.m.events.WithLabelValues(append(append([]string{}, s.labels...), event)...)
}

// Gauge returns a stage-specific gauge named name.
func (s *StageMetrics) Gauge(name string) prometheus.Gauge {
	return s.m.gauges.WithLabelValues(append(append([]string{}, s.labels...), name)...)
}

// DropCounter counts one reason of drops and logs them in summaries.
type DropCounter struct {
	c       prometheus.Counter
	reason  string
	log     *slog.Logger
	pending atomic.Uint64
	lastLog atomic.Int64
}

const dropLogEvery = 5 * time.Second

// Inc counts one drop.
func (d *DropCounter) Inc() { d.Add(1) }

// Add counts n drops.
func (d *DropCounter) Add(n int) {
	if n <= 0 {
		return
	}
	d.c.Add(float64(n))
	d.pending.Add(uint64(n))
	now := time.Now().UnixNano()
	last := d.lastLog.Load()
	if now-last < int64(dropLogEvery) || !d.lastLog.CompareAndSwap(last, now) {
		return
	}
	if d.log != nil {
		d.log.Warn("dropped", "reason", d.reason, "count", d.pending.Swap(0))
	}
}

// Value returns the total counted so far.
func (d *DropCounter) Value() float64 { return CounterValue(d.c) }

// CounterValue reads a counter's current value (for tests and status pages).
func CounterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil || m.Counter == nil {
		return 0
	}
	return m.Counter.GetValue()
}

// GaugeValue reads a gauge's current value.
func GaugeValue(g prometheus.Gauge) float64 {
	var m dto.Metric
	if err := g.Write(&m); err != nil || m.Gauge == nil {
		return 0
	}
	return m.Gauge.GetValue()
}
