package bench

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mediapipe/mediapipe/core"

	"github.com/mediapipe/mediapipe/internal/metricread"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// cpuTime is the process's user + system CPU time so far (getrusage).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// memKB returns VmHWM (peak RSS) and VmRSS from /proc/self/status, in KiB;
// 0 where unknown (not Linux).
func memKB() (hwm, rss int64) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		for _, k := range []struct {
			name string
			dst  *int64
		}{{"VmHWM:", &hwm}, {"VmRSS:", &rss}} {
			if rest, ok := strings.CutPrefix(line, k.name); ok {
				fs := strings.Fields(rest)
				if len(fs) > 0 {
					*k.dst, _ = strconv.ParseInt(fs[0], 10, 64)
				}
			}
		}
	}
	return hwm, rss
}

func mallocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}

// metricsView is one Gather of the runtime's registry, read by stage name
// and label, so the bench does not depend on how a stage looks its counters up.
type metricsView struct {
	fams map[string]*dto.MetricFamily
}

func gather(reg *prometheus.Registry) metricsView {
	v := metricsView{fams: map[string]*dto.MetricFamily{}}
	if reg == nil {
		return v
	}
	fams, _ := reg.Gather()
	for _, f := range fams {
		v.fams[f.GetName()] = f
	}
	return v
}

// sum adds the values of family's series whose labels include every pair
// of match; found is false when no series matched (the stage does not
// count that, or is not in the pipeline).
func (v metricsView) sum(family string, match map[string]string) (total float64, found bool) {
	f := v.fams[family]
	if f == nil {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		if !metricread.HasLabels(m.GetLabel(), match) {
			continue
		}
		found = true
		switch {
		case m.Counter != nil:
			total += m.Counter.GetValue()
		case m.Gauge != nil:
			total += m.Gauge.GetValue()
		}
	}
	return total, found
}

// firstOf sums the first of names that exists as a label value of key.
func (v metricsView) firstOf(family, pipeline, stage, key string, names ...string) (float64, bool) {
	for _, n := range names {
		if x, ok := v.sum(family, map[string]string{"pipeline": pipeline, "stage": stage, key: n}); ok {
			return x, true
		}
	}
	return 0, false
}

// counter reads the counter a stage names name (as it calls
// env.Metrics.Counter(name)) of pipeline's stage.
func (v metricsView) counter(pipeline, stage, name string) (float64, bool) {
	return v.sum(core.StageCounterFamily(stage, name), map[string]string{"pipeline": pipeline, "stage": stage})
}

// gauge reads the gauge a stage names name of pipeline's stage.
func (v metricsView) gauge(pipeline, stage, name string) (float64, bool) {
	return v.sum(core.StageGaugeFamily(stage, name), map[string]string{"pipeline": pipeline, "stage": stage})
}

// drops lists every non-zero drop counter as "pipeline/stage reason" → count.
func (v metricsView) drops() map[string]float64 {
	out := map[string]float64{}
	f := v.fams["mediapipe_stage_drops_total"]
	if f == nil {
		return out
	}
	for _, m := range f.GetMetric() {
		val := m.GetCounter().GetValue()
		if val == 0 {
			continue
		}
		l := map[string]string{}
		for _, lp := range m.GetLabel() {
			l[lp.GetName()] = lp.GetValue()
		}
		out[l["pipeline"]+"/"+l["stage"]+" "+l["reason"]] += val
	}
	return out
}
