package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is what one bench run measured. Pointers are nil ("n/a") when the
// relay does not count that figure.
type Report struct {
	Command     string             `json:"command"`
	Machine     Machine            `json:"machine"`
	Config      RunInfo            `json:"config"`
	Interrupted bool               `json:"interrupted,omitempty"`
	Window      float64            `json:"window_seconds"` // the measured window
	In          Flow               `json:"in"`             // cloud ingress (what publishers wrote)
	Out         Flow               `json:"out"`            // edge egress (what viewers read)
	CPU         CPU                `json:"cpu"`
	Latency     Quantile           `json:"latency_ms"`     // publisher write → viewer parse, per media tag
	TTFF        Quantile           `json:"first_frame_ms"` // viewer connect → first video keyframe
	Loss        Loss               `json:"loss"`
	Gaps        Gaps               `json:"gaps"` // what explains the skipped packets
	Viewers     Viewers            `json:"viewers"`
	Memory      Memory             `json:"memory"`
	Correctness Check              `json:"correctness"`
	Drops       map[string]float64 `json:"drops"` // every non-zero drop counter, "pipeline/stage reason"
	Floor       *Floor             `json:"floor,omitempty"`
	SinkShare   *float64           `json:"udp_sink_share_of_floor,omitempty"` // --floor: udp-sink packets/s ÷ WriteBatch packets/s, same run
	Errors      []string           `json:"errors,omitempty"`
}

// Machine is where the run happened.
type Machine struct {
	CPUs      int    `json:"cpus"`
	Model     string `json:"cpu_model,omitempty"`
	GoVersion string `json:"go"`
	OS        string `json:"os"`
	// Load is the 1-minute load average at the start and the end of the
	// run: above CPUs, other processes competed with the bench and its
	// latency figures suffer.
	LoadStart float64 `json:"load_start"`
	LoadEnd   float64 `json:"load_end"`
}

// RunInfo echoes the run's settings.
type RunInfo struct {
	Streams        int     `json:"streams"`
	ViewersPer     int     `json:"viewers_per_stream"`
	Duration       string  `json:"duration"`
	Loss           float64 `json:"loss"`
	Burst          int     `json:"burst"`
	Fast           bool    `json:"fast"`
	Input          string  `json:"input"`
	InputKbps      float64 `json:"input_kbps"`
	ReorderLatency string  `json:"reorder_latency"`
	Split          bool    `json:"split_viewers,omitempty"`
	RelayCPUs      []int   `json:"relay_cpus,omitempty"`
	ViewerCPUs     []int   `json:"viewer_cpus,omitempty"`
}

// Flow is a rate over the measured window.
type Flow struct {
	Tags       uint64  `json:"tags"`
	TagsPerSec float64 `json:"tags_per_sec"`
	RTPPerSec  float64 `json:"rtp_packets_per_sec"`
	Mbps       float64 `json:"mbps"`
}

// CPU is the process's CPU use over the window.
type CPU struct {
	Seconds       float64 `json:"seconds"`
	Cores         float64 `json:"cores"`                          // CPU seconds per wall second
	PerViewerMbps float64 `json:"seconds_per_viewer_mbps"`        // cores ÷ delivered Mbps
	ViewerCores   float64 `json:"viewer_process_cores,omitempty"` // --split: the viewer process's own
}

// Quantile summarises a distribution in milliseconds.
type Quantile struct {
	N   uint64  `json:"n"`
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// Loss is what happened to packets between cloud and edge.
type Loss struct {
	Lost     *float64 `json:"lost"`     // netsim drops
	Repaired *float64 `json:"repaired"` // rtp-reorder repairs over QUIC
	Skipped  *float64 `json:"skipped"`  // gaps rtp-reorder gave up on
}

// Viewers counts viewer sessions.
type Viewers struct {
	Wanted  int      `json:"wanted"`
	Joined  int      `json:"joined"`
	Dropped int      `json:"dropped"`      // response ended before the publisher stopped
	Shed    *float64 `json:"shed_by_sink"` // httpflv-sink slow_viewer drops
	Reasons []string `json:"drop_reasons,omitempty"`
}

// Memory is the process's memory cost.
type Memory struct {
	PeakRSSMB       float64 `json:"peak_rss_mb"`
	RSSMB           float64 `json:"rss_mb"`
	AllocsPerPacket float64 `json:"allocs_per_rtp_packet"`    // process mallocs but the bench's measuring ÷ RTP packets the cloud sent
	AllocsPerTag    float64 `json:"allocs_per_delivered_tag"` // the same mallocs ÷ tags viewers read
	// MeterPerPacket is what the bench's own measuring allocated (gathering
	// the registry each second, decoding the viewer process's reports) ÷ RTP
	// packets: left out of the two figures above, stated here.
	MeterPerPacket float64 `json:"bench_meter_allocs_per_rtp_packet"`
}

// Check compares what viewers got with what was published.
type Check struct {
	Matched   uint64 `json:"matched"`
	Missing   int    `json:"missing"`   // published between a viewer's first and last matched tags, never received
	Corrupt   uint64 `json:"corrupt"`   // same (timestamp, type), different bytes
	Unknown   uint64 `json:"unknown"`   // never published (or too old to remember)
	Duplicate uint64 `json:"duplicate"` // received again or out of order
	Verdict   string `json:"verdict"`
}

func newReport(cfg Config) *Report {
	r := &Report{
		Machine: Machine{CPUs: runtime.NumCPU(), Model: cpuModel(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH},
		Config: RunInfo{
			Streams: cfg.Streams, ViewersPer: cfg.Viewers, Duration: cfg.Duration.String(),
			Loss: cfg.Loss, Burst: cfg.Burst, Fast: cfg.Fast, ReorderLatency: cfg.ReorderLatency.String(),
			Split: cfg.Split, RelayCPUs: cfg.RelayCPUs, ViewerCPUs: cfg.ViewerCPUs,
		},
		Drops: map[string]float64{},
	}
	r.Machine.LoadStart = loadAvg()
	return r
}

// loadAvg is the 1-minute load average (0 where unknown); a variable so a
// test can tell it was read.
var loadAvg = procLoadAvg

func procLoadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	x, _ := strconv.ParseFloat(f[0], 64)
	return x
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// fill states what the run measured between the snapshots from and to;
// stopAt is when the publishers were told to stop, agg the audience's final
// counts and m the relay's final metrics.
func (r *Report) fill(cfg Config, from, to snapshot, stopAt time.Time, pubs []*publisher, agg viewerAgg, m metricsView) {
	r.Machine.LoadEnd = loadAvg()
	win := to.at.Sub(from.at).Seconds()
	r.Window = round(win, 2)
	if win <= 0 {
		win = 1
	}
	// What viewers read is counted by the audience and stamped by its own
	// clock: with --split the child's reports reach this process some time
	// after they were taken, so dividing their counts by this process's
	// window would mis-state the rate by the difference in lag.
	audWin := time.Duration(to.aud.At - from.aud.At).Seconds()
	if audWin <= 0 {
		audWin = win
	}
	r.fillRates(from, to, win, audWin)
	r.Latency = quantiles(agg.Lat.hist())
	r.TTFF = quantiles(agg.TTFF.hist())
	r.fillLoss(cfg, m)
	r.fillViewers(agg, stopAt, m)
	r.fillMemory(from, to, win, audWin)
	r.fillCorrectness(agg)
	r.Drops = m.drops()
	for _, pb := range pubs {
		if err := pb.lastErr(); err != nil {
			r.Errors = append(r.Errors, err.Error())
		}
	}
}

// fillRates states the flows in and out and the CPU they cost: win is this
// process's window in seconds, audWin the audience's.
func (r *Report) fillRates(from, to snapshot, win, audWin float64) {
	r.In = Flow{
		Tags:       to.pubTags - from.pubTags,
		TagsPerSec: round(float64(to.pubTags-from.pubTags)/win, 1),
		RTPPerSec:  round((to.rtp-from.rtp)/win, 1),
		Mbps:       round(float64(to.pubBytes-from.pubBytes)*8/win/1e6, 3),
	}
	r.Out = Flow{
		Tags:       to.aud.Tags - from.aud.Tags,
		TagsPerSec: round(float64(to.aud.Tags-from.aud.Tags)/audWin, 1),
		RTPPerSec:  round((to.edgeRTP-from.edgeRTP)/win, 1),
		Mbps:       round(float64(to.aud.Bytes-from.aud.Bytes)*8/audWin/1e6, 3),
	}
	cpu := (to.cpu - from.cpu).Seconds()
	r.CPU = CPU{Seconds: round(cpu, 2), Cores: round(cpu/win, 3)}
	if to.aud.CPU > 0 && from.aud.CPU > 0 { // both from child reports
		r.CPU.ViewerCores = round(time.Duration(to.aud.CPU-from.aud.CPU).Seconds()/audWin, 3)
	}
	if r.Out.Mbps > 0 {
		r.CPU.PerViewerMbps = round(cpu/win/r.Out.Mbps, 5)
	}
}

// fillLoss states the edge's lost, repaired and skipped packets.
func (r *Report) fillLoss(cfg Config, m metricsView) {
	if x, ok := m.firstOf("mediapipe_stage_drops_total", "edge", "netsim", "reason", lossReasons...); ok {
		r.Loss.Lost = &x
	}
	if x, ok := m.counter("edge", "rtp-reorder", "repaired"); ok {
		r.Loss.Repaired = &x
	}
	if x, ok := m.firstOf("mediapipe_stage_drops_total", "edge", "rtp-reorder", "reason", skipReasons...); ok {
		r.Loss.Skipped = &x
	}
	if cfg.Loss == 0 && r.Loss.Lost == nil {
		zero := 0.0
		r.Loss.Lost = &zero // no netsim stage: nothing was dropped on purpose
	}
}

// fillViewers counts the viewers that joined and those whose response ended
// before stopAt, with the ten commonest reasons why.
func (r *Report) fillViewers(agg viewerAgg, stopAt time.Time, m metricsView) {
	r.Viewers.Wanted, r.Viewers.Joined = agg.Wanted, agg.Joined
	reasons := map[string]int{}
	for _, e := range agg.Ended {
		if e.At < stopAt.UnixNano() {
			r.Viewers.Dropped++
			reasons[e.Reason]++
		}
	}
	type kn struct {
		k string
		n int
	}
	var byCount []kn
	for k, n := range reasons {
		byCount = append(byCount, kn{k, n})
	}
	sort.Slice(byCount, func(i, j int) bool {
		return byCount[i].n > byCount[j].n || byCount[i].n == byCount[j].n && byCount[i].k < byCount[j].k
	})
	for i, x := range byCount {
		if i == 10 {
			r.Viewers.Reasons = append(r.Viewers.Reasons, fmt.Sprintf("… %d more reasons", len(byCount)-10))
			break
		}
		r.Viewers.Reasons = append(r.Viewers.Reasons, fmt.Sprintf("%d× %s", x.n, x.k))
	}
	if x, ok := m.firstOf("mediapipe_stage_drops_total", "edge", "httpflv-sink", "reason", shedReasons...); ok {
		r.Viewers.Shed = &x
	}
}

// fillMemory states the process's RSS and its allocations per packet sent
// and per tag delivered.
func (r *Report) fillMemory(from, to snapshot, win, audWin float64) {
	hwm, rss := memKB()
	r.Memory.PeakRSSMB = round(float64(hwm)/1024, 1)
	r.Memory.RSSMB = round(float64(rss)/1024, 1)
	self := to.self - from.self
	relay := float64(to.mallocs - from.mallocs - min(self, to.mallocs-from.mallocs))
	if pk := to.rtp - from.rtp; pk > 0 {
		r.Memory.AllocsPerPacket = round(relay/pk, 2)
		r.Memory.MeterPerPacket = round(float64(self)/pk, 2)
	}
	if n := to.aud.Tags - from.aud.Tags; n > 0 { // a ratio of rates: the two counts have their own windows
		r.Memory.AllocsPerTag = round(relay/win/(float64(n)/audWin), 2)
	}
}

// fillCorrectness copies the viewers' tag checks and gives the verdict.
func (r *Report) fillCorrectness(agg viewerAgg) {
	r.Correctness.Matched = agg.Matched
	r.Correctness.Missing = agg.Missing
	r.Correctness.Corrupt = agg.Corrupt
	r.Correctness.Unknown = agg.Unknown
	r.Correctness.Duplicate = agg.Dup
	c := &r.Correctness
	switch {
	case c.Corrupt > 0 || c.Unknown > 0:
		c.Verdict = "CORRUPT: viewers got tags that were never published"
	case c.Matched == 0:
		c.Verdict = "NO DATA: no viewer got a published tag"
	case c.Missing > 0 || c.Duplicate > 0:
		c.Verdict = "intact but incomplete: tags missing or repeated (loss not repaired, or shed)"
	default:
		c.Verdict = "ok: every viewer got every tag since it joined, byte for byte"
	}
}

func quantiles(h *histogram) Quantile {
	return Quantile{
		N:   h.n.Load(),
		P50: round(float64(h.quantile(0.5))/1e6, 2),
		P99: round(float64(h.quantile(0.99))/1e6, 2),
		Max: round(float64(h.max.Load())/1e6, 2),
	}
}

func round(x float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(x*p) / p
}

func (r *Report) writeJSON(w io.Writer) error { return writeJSONTo(w, r) }

// printReport prints rep to stdout, as JSON or through table; false (the
// reason said on stderr) when the JSON could not be written: every mode of
// the command prints its report so.
func printReport(stdout, stderr io.Writer, asJSON bool, rep any, table func(io.Writer)) bool {
	if !asJSON {
		table(stdout)
		return true
	}
	if err := writeJSONTo(stdout, rep); err != nil {
		fmt.Fprintln(stderr, "mediapipe bench:", err)
		return false
	}
	return true
}

func writeJSONTo(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func na(p *float64) string {
	if p == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.0f", *p)
}

func (r *Report) writeTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, f string, a ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(f, a...)) }
	if r.Command != "" {
		row("command", "%s", r.Command)
	}
	row("machine", "%d CPUs, %s, %s, %s; load average %.1f → %.1f", r.Machine.CPUs, r.Machine.Model, r.Machine.GoVersion, r.Machine.OS, r.Machine.LoadStart, r.Machine.LoadEnd)
	if max(r.Machine.LoadStart, r.Machine.LoadEnd) > float64(r.Machine.CPUs) {
		row("WARNING", "the machine was busy with other work: latency and rate figures are pessimistic")
	}
	if r.Floor != nil {
		r.floorRows(row)
	}
	if r.Config.Streams == 0 {
		tw.Flush()
		return
	}
	mode := "real time"
	if r.Config.Fast {
		mode = "fast"
	}
	row("run", "%d streams × %d viewers, %s, loss %g burst %d, reorder latency %s, %s", r.Config.Streams, r.Config.ViewersPer, r.Config.Duration, r.Config.Loss, r.Config.Burst, r.Config.ReorderLatency, mode)
	who := "whole process, load generators included"
	if r.Config.Split {
		who = "relay + publishers; viewers run in a child process"
		row("viewers", "in a child process (%s); relay process %s", cpuList(r.Config.ViewerCPUs), cpuList(r.Config.RelayCPUs))
	} else if len(r.Config.RelayCPUs) > 0 {
		row("pinned", "process %s", cpuList(r.Config.RelayCPUs))
	}
	row("input", "%s (%.0f kbps)", r.Config.Input, r.Config.InputKbps)
	if r.Interrupted {
		row("INTERRUPTED", "figures cover the part that ran")
	}
	row("measured window", "%.1f s", r.Window)
	row("in (cloud ingress)", "%.1f tags/s, %.1f RTP pkt/s, %.2f Mbps", r.In.TagsPerSec, r.In.RTPPerSec, r.In.Mbps)
	row("out (edge egress)", "%.1f tags/s, %.2f Mbps to viewers (edge got %.1f RTP pkt/s)", r.Out.TagsPerSec, r.Out.Mbps, r.Out.RTPPerSec)
	row("CPU", "%.2f s = %.3f cores; %.5f CPU-s/s per delivered viewer-Mbps (%s)", r.CPU.Seconds, r.CPU.Cores, r.CPU.PerViewerMbps, who)
	if r.Config.Split {
		row("viewer process CPU", "%.3f cores (if it is near the CPUs it has, the viewers, not the relay, set the pace)", r.CPU.ViewerCores)
	}
	row("latency publisher→viewer", "p50 %.2f ms  p99 %.2f ms  max %.2f ms  (%d tags)", r.Latency.P50, r.Latency.P99, r.Latency.Max, r.Latency.N)
	row("time to first frame", "p50 %.1f ms  p99 %.1f ms  max %.1f ms  (%d viewers)", r.TTFF.P50, r.TTFF.P99, r.TTFF.Max, r.TTFF.N)
	row("packets", "lost %s  repaired %s  skipped %s", na(r.Loss.Lost), na(r.Loss.Repaired), na(r.Loss.Skipped))
	r.gapRows(row)
	row("viewers", "%d/%d joined, %d dropped, %s shed by sink", r.Viewers.Joined, r.Viewers.Wanted, r.Viewers.Dropped, na(r.Viewers.Shed))
	for _, s := range r.Viewers.Reasons {
		row("  dropped", "%s", s)
	}
	row("memory", "peak RSS %.1f MB, RSS %.1f MB", r.Memory.PeakRSSMB, r.Memory.RSSMB)
	row("allocations", "%.2f per RTP packet sent, %.2f per tag delivered (%s); the bench's own measuring %.2f per packet more, not counted",
		r.Memory.AllocsPerPacket, r.Memory.AllocsPerTag, who, r.Memory.MeterPerPacket)
	c := r.Correctness
	row("correctness", "%s", c.Verdict)
	row("  tags", "%d matched, %d missing, %d corrupt, %d unknown, %d duplicate", c.Matched, c.Missing, c.Corrupt, c.Unknown, c.Duplicate)
	for _, k := range slices.Sorted(maps.Keys(r.Drops)) {
		row("  drop", "%s: %.0f", k, r.Drops[k])
	}
	for _, e := range r.Errors {
		row("ERROR", "%s", e)
	}
	tw.Flush()
}

// floorRows are the table's rows for --floor.
func (r *Report) floorRows(row func(k, f string, a ...any)) {
	f := r.Floor
	row("floor: WriteToUDP", "%.0f pkt/s (%.0f Mbps), 1200 B loopback", f.PlainPPS, f.PlainMbps)
	row("floor: WriteBatch 64", "%.0f pkt/s (%.0f Mbps), %.0f %% received, connected socket", f.BatchedPPS, f.BatchMbps, f.RecvShare*100)
	if f.GSOPPS > 0 {
		row("floor: GSO 48", "%.0f pkt/s (%.0f Mbps), connected socket, UDP_SEGMENT runs of 48 (udp-sink's default path)", f.GSOPPS, f.GSOMbps)
	}
	if r.SinkShare != nil {
		row("floor: udp-sink", "%.0f pkt/s (%.0f Mbps), %.0f %% received; %.1f %% of WriteBatch 64, %.1f %% of GSO 48 (stage fed by a generator goroutine; %s)",
			f.SinkPPS, f.SinkMbps, f.SinkRecvShare*100, *r.SinkShare*100, f.SinkShareGSO*100, f.SinkSettings)
		row("floor: CPU per packet", "WriteToUDP %.0f ns, WriteBatch 64 %.0f ns, GSO 48 %.0f ns; udp-sink %.0f ns (%.1f %% of GSO 48's rate per CPU-second) + its generator %.0f ns",
			f.PlainCPU, f.BatchedCPU, f.GSOCPU, f.SinkCPU, f.SinkCPUShareGSO*100, f.SinkDriverCPU)
	}
	if f.SinkSendErrors > 0 {
		row("  udp-sink send errors", "%.0f datagrams", f.SinkSendErrors)
	}
}

func cpuList(cpus []int) string {
	if len(cpus) == 0 {
		return "not pinned"
	}
	return fmt.Sprintf("pinned to CPUs %v", cpus)
}

// gapRows state what explains the skipped packets, and loudly what does not.
func (r *Report) gapRows(row func(k, f string, a ...any)) {
	g := r.Gaps
	row("  repair", "nacked %s  gone %s  rtt %s ms  connected at end %s, down %d s of the run", na(g.NacksSent), na(g.Gone), na(g.RTT), na(g.RepairUp), g.RepairDownSeconds)
	row("  unrepaired", "refused %s  unavailable %s  (repaired after latency %s)", na(g.Refused), na(g.Unavailable), na(g.RepairedLate))
	for _, k := range slices.Sorted(maps.Keys(g.Causes)) {
		row("  explained by", "%s: %.0f", k, g.Causes[k])
	}
	if g.Unexplained > 0 {
		row("UNEXPLAINED GAPS", "%.0f of %.0f skipped packets were lost where no counter saw them", g.Unexplained, g.Skipped)
	}
}
