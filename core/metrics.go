package core

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"strings"
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
	events     *prometheus.CounterVec // counters no family describes
	gauges     *prometheus.GaugeVec   // gauges no family describes
	// The stages' named counters and gauges, by family name.
	counterVecs map[string]*prometheus.CounterVec
	gaugeVecs   map[string]*prometheus.GaugeVec
	reloads     *prometheus.CounterVec
	// ReloadOK is 1 when the last reload was applied whole, 0 when it was
	// refused or a pipeline could not start (1 before any reload).
	ReloadOK prometheus.Gauge

	// Summaries of drops held back by the per-reason log limit are written
	// by one timer per Metrics, armed only while some are pending, so an
	// idle process has no goroutine for them and a quiet reason's count is
	// logged within summaryEvery rather than at its next drop.
	summaryEvery time.Duration
	armed        atomic.Bool
	mu           sync.Mutex
	counters     []*DropCounter
	dropsByKey   map[string]*DropCounter // by labels and reason: a restarted stage counts on
	timer        *time.Timer
	closed       bool
}

var stageLabels = []string{"pipeline", "position", "stage"}

// NewMetrics builds a registry with the Go and process collectors and the
// per-stage families.
func NewMetrics() *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry(), summaryEvery: dropLogEvery,
		counterVecs: map[string]*prometheus.CounterVec{}, gaugeVecs: map[string]*prometheus.GaugeVec{}}
	counter := func(f Family) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: f.Name, Help: f.Help}, append(slices.Clone(stageLabels), f.Labels...))
	}
	m.packetsIn = counter(famPacketsIn)
	m.packetsOut = counter(famPacketsOut)
	m.drops = counter(famDrops)
	m.events = counter(famEvents)
	m.gauges = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: famGauge.Name, Help: famGauge.Help}, append(slices.Clone(stageLabels), famGauge.Labels...))
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: famReloads.Name, Help: famReloads.Help}, famReloads.Labels)
	m.ReloadOK = prometheus.NewGauge(prometheus.GaugeOpts{Name: famReloadOK.Name, Help: famReloadOK.Help})
	for _, f := range stageCounters {
		if m.counterVecs[f.Name] == nil {
			m.counterVecs[f.Name] = counter(f)
			m.Registry.MustRegister(m.counterVecs[f.Name])
		}
	}
	for _, f := range stageGauges {
		if m.gaugeVecs[f.Name] == nil {
			m.gaugeVecs[f.Name] = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: f.Name, Help: f.Help}, stageLabels)
			m.Registry.MustRegister(m.gaugeVecs[f.Name])
		}
	}
	m.ReloadOK.Set(1)
	m.Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.packetsIn, m.packetsOut, m.drops, m.events, m.gauges, m.reloads, m.ReloadOK,
	)
	return m
}

// Reload returns the counter of reloads with result (ok, refused, failed).
func (m *Metrics) Reload(result string) prometheus.Counter {
	return m.reloads.WithLabelValues(result)
}

// Forget deletes every series of pipeline, which a reload removed, so the
// label values a process exports stay bounded by what it runs.
func (m *Metrics) Forget(pipeline string) {
	l := prometheus.Labels{"pipeline": pipeline}
	m.packetsIn.DeletePartialMatch(l)
	m.packetsOut.DeletePartialMatch(l)
	m.drops.DeletePartialMatch(l)
	m.events.DeletePartialMatch(l)
	m.gauges.DeletePartialMatch(l)
	for _, v := range m.counterVecs {
		v.DeletePartialMatch(l)
	}
	for _, v := range m.gaugeVecs {
		v.DeletePartialMatch(l)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.counters = slices.DeleteFunc(m.counters, func(d *DropCounter) bool {
		if d.labels[0] != pipeline {
			return false
		}
		delete(m.dropsByKey, d.key)
		return true
	})
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
	labels := append(append([]string{}, s.labels...), reason)
	key := strings.Join(labels, "\x00")
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	// A stage a reload rebuilt under the same labels counts on in the
	// counter it had, so the summary list does not grow per reload.
	d, ok := s.m.dropsByKey[key]
	if !ok {
		d = &DropCounter{m: s.m, c: s.m.drops.WithLabelValues(labels...), reason: reason, log: s.log, labels: labels, key: key}
		if s.m.dropsByKey == nil {
			s.m.dropsByKey = map[string]*DropCounter{}
		}
		s.m.dropsByKey[key] = d
		s.m.counters = append(s.m.counters, d)
	}
	s.drops[reason] = d
	return d
}

// Drops returns the stage's drop counts by reason, for status pages.
func (s *StageMetrics) Drops() map[string]float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]float64, len(s.drops))
	for reason, d := range s.drops {
		out[reason] = d.Value()
	}
	return out
}

// Counter returns the stage's counter named name, in the family
// metricnames.go gives that name (mediapipe_stage_events_total{event=name}
// for a name it does not know).
func (s *StageMetrics) Counter(name string) prometheus.Counter {
	if f, ok := stageFamily(stageCounters, s.labels[2], name); ok {
		return s.m.counterVecs[f.Name].WithLabelValues(append(slices.Clone(s.labels), f.Values...)...)
	}
	return s.m.events.WithLabelValues(append(append([]string{}, s.labels...), name)...)
}

// Gauge returns the stage's gauge named name, in the family metricnames.go
// gives that name (mediapipe_stage_gauge{name=name} for one it does not know).
func (s *StageMetrics) Gauge(name string) prometheus.Gauge {
	if f, ok := stageFamily(stageGauges, s.labels[2], name); ok {
		return s.m.gaugeVecs[f.Name].WithLabelValues(s.labels...)
	}
	return s.m.gauges.WithLabelValues(append(append([]string{}, s.labels...), name)...)
}

// DropCounter counts one reason of drops and logs them in summaries.
type DropCounter struct {
	m       *Metrics
	c       prometheus.Counter
	reason  string
	labels  []string // the stage's labels and the reason
	key     string   // labels joined: its key in Metrics.dropsByKey
	log     *slog.Logger
	pending atomic.Uint64
	lastLog atomic.Int64
	refusal atomic.Bool // counts refusals: summaries say "refused"
}

const dropLogEvery = 5 * time.Second

// Inc counts one drop.
func (d *DropCounter) Inc() { d.Add(1) }

// Add counts n drops. The first drop of a quiet reason is logged at once;
// later ones within dropLogEvery are summed into one "dropped … count=N"
// line, written by the Metrics' timer.
func (d *DropCounter) Add(n int) {
	if n <= 0 {
		return
	}
	d.c.Add(float64(n))
	d.pending.Add(uint64(n))
	if d.logNow() {
		d.write("dropped", nil)
	}
}

// Refused counts one refusal of something a stranger asked for (a publish,
// a peer, a stream) and logs msg with args only when this reason was quiet
// for dropLogEvery; otherwise the refusal waits for the "refused …
// count=N" summary. So a flood of refusals costs a line per interval, not
// one per attempt. Clip attacker-controlled args (see Clip).
func (d *DropCounter) Refused(msg string, args ...any) {
	if !d.refusal.Load() {
		d.refusal.Store(true)
	}
	d.c.Inc()
	d.pending.Add(1)
	if d.logNow() {
		d.write(msg, args)
	}
}

// logNow says whether this drop may be logged now (and claims the slot);
// if not, it makes sure a summary will be written.
func (d *DropCounter) logNow() bool {
	now := time.Now().UnixNano()
	last := d.lastLog.Load()
	if now-last >= int64(d.every()) && d.lastLog.CompareAndSwap(last, now) {
		return true
	}
	// No timer for a logger that writes nothing (tests, fuzzing): an armed
	// timer keeps its Metrics alive for the interval.
	if d.m != nil && !d.m.armed.Load() && d.log != nil && d.log.Enabled(context.Background(), slog.LevelWarn) {
		d.m.arm()
	}
	return false
}

func (d *DropCounter) every() time.Duration {
	if d.m != nil {
		return d.m.summaryEvery
	}
	return dropLogEvery
}

// write logs msg with the count pending since the last line.
func (d *DropCounter) write(msg string, args []any) {
	n := d.pending.Swap(0)
	if d.log == nil || n == 0 {
		return
	}
	d.log.Warn(msg, append(args, "reason", d.reason, "count", n)...)
}

// flush writes the summary of drops held back since the last line.
func (d *DropCounter) flush(verb string) {
	if d.pending.Load() == 0 {
		return
	}
	d.lastLog.Store(time.Now().UnixNano())
	d.write(verb, nil)
}

// arm starts the summary timer unless it is already pending. The fast
// path is one atomic load, so a drop stays allocation-free.
func (m *Metrics) arm() {
	if m.armed.Load() || !m.armed.CompareAndSwap(false, true) {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return // armed stays set: no timer after Close
	}
	m.timer = time.AfterFunc(m.summaryEvery, m.flushSummaries)
}

// flushSummaries writes every pending drop summary.
func (m *Metrics) flushSummaries() {
	m.mu.Lock()
	if !m.closed {
		m.armed.Store(false)
	}
	counters := append([]*DropCounter(nil), m.counters...)
	m.mu.Unlock()
	for _, d := range counters {
		d.flush(d.verb())
	}
}

// verb names a summary line by what the counter counts.
func (d *DropCounter) verb() string {
	if d.refusal.Load() {
		return "refused"
	}
	return "dropped"
}

// Close writes the pending drop summaries and stops the summary timer, so
// nothing of the Metrics runs after shutdown. Counting goes on after Close;
// only held-back summaries are no longer written on a timer.
func (m *Metrics) Close() {
	m.mu.Lock()
	m.closed = true
	m.armed.Store(true)
	if m.timer != nil {
		m.timer.Stop()
	}
	m.mu.Unlock()
	m.flushSummaries()
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
