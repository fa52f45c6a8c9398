package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/control"
	"github.com/mediapipe/mediapipe/host"
	"github.com/mediapipe/mediapipe/internal/cli"
	"github.com/mediapipe/mediapipe/internal/freeport"
	"github.com/mediapipe/mediapipe/internal/relaytoml"
)

// edgesReorderLatency is rtp-reorder's latency with --edges unless
// --reorder-latency says otherwise: the budget (150 ms), which the
// FEC group's wait counts in.
const edgesReorderLatency = 150 * time.Millisecond

// The payload types the cloud sends: rtp-fragmenter's media and
// fec-encoder's parity (both stages' defaults, which the bench keeps).
const (
	mediaPT  = 100
	parityPT = 101
)

// multicastNote is printed with every --edges report: the bench's cloud
// sends a unicast copy to each edge, which is not what it would pay.
const multicastNote = "media and parity are counted once: on a real network one multicast group carries them once to every edge " +
	"(here udp-sink sends a unicast copy to each edge's port on loopback, not counted); repair is counted per edge, as each edge's " +
	"repair connection carries its own"

// EdgesReport is the result of `mediapipe bench --edges N`.
type EdgesReport struct {
	Command string       `json:"command"`
	Config  EdgesRunInfo `json:"config"`
	Note    string       `json:"note"`
	Seconds float64      `json:"seconds"`
	// LoadStart and LoadEnd are the 1-minute load average around the
	// run: what else the machine was doing weighs on the latencies.
	LoadStart   float64         `json:"load_start"`
	LoadEnd     float64         `json:"load_end"`
	CloudEgress Egress          `json:"cloud_egress"`
	Sent        SentCheck       `json:"cloud_sent"`
	Edges       []EdgeResult    `json:"edges"`
	Control     []ControlSample `json:"control,omitempty"`
	// StaticOverhead is fec-encoder's overhead when no stage runs a
	// controller (nothing implements control.Reporter).
	StaticOverhead *float64 `json:"static_overhead,omitempty"`
	Intact         bool     `json:"intact"`
	Verdict        string   `json:"verdict"`
	Interrupted    bool     `json:"interrupted,omitempty"`
	Errors         []string `json:"errors,omitempty"`
}

// EdgesRunInfo is the run's settings, as the report states them.
type EdgesRunInfo struct {
	Edges            int      `json:"edges"`
	Streams          int      `json:"streams"`
	ViewersPerStream int      `json:"viewers_per_stream_per_edge"`
	Input            string   `json:"input"`
	InputKbps        float64  `json:"input_kbps"`
	Loss             float64  `json:"loss"`
	Burst            int      `json:"burst"`
	Seed             int64    `json:"seed"`
	FEC              bool     `json:"fec"`
	Policy           string   `json:"policy,omitempty"`
	Overhead         *float64 `json:"overhead,omitempty"`
	FECGroup         int      `json:"fec_group,omitempty"`
	TotalRate        int      `json:"total_rate,omitempty"` // quic-retransmit's, bytes/s
	ReorderLatencyMS float64  `json:"reorder_latency_ms"`
	DurationSeconds  float64  `json:"duration_seconds"`
}

// Egress is the cloud's egress over the run, as multicast would pay it:
// media and parity once, repair once per edge that asked.
type Egress struct {
	MediaBytes    uint64  `json:"media_bytes"`
	ParityBytes   uint64  `json:"parity_bytes"`
	RepairBytes   uint64  `json:"repair_bytes"`
	RatioToMedia  float64 `json:"ratio_to_media"`
	MediaPackets  uint64  `json:"media_packets"`
	ParityPackets uint64  `json:"parity_packets"`
	RepairPackets uint64  `json:"repair_packets"`
	RTCPBytes     uint64  `json:"rtcp_bytes"` // sender reports, left out of the ratio
}

// SentCheck compares what the meter (one more udp-sink destination, read
// by the bench as one multicast receiver would be) saw with the stages'
// own counters, so a meter that missed packets shows.
type SentCheck struct {
	SinkDatagrams       float64 `json:"udp_sink_datagrams"`      // every destination counted
	SinkDatagramsOnce   float64 `json:"udp_sink_datagrams_once"` // ÷ destinations
	MeterPackets        uint64  `json:"meter_rtp_packets"`       // media + parity the meter read
	MeterRTCP           uint64  `json:"meter_rtcp_packets"`      // sender reports the meter read
	ParitySentCounter   float64 `json:"fec_parity_sent"`         // fec-encoder's counter
	MeterKernelDrops    int64   `json:"meter_kernel_drops"`      // the meter socket's
	RepairBytesEstimate string  `json:"repair_bytes_estimate"`   // how repair bytes were derived
}

// EdgeResult is one edge's delivery, its viewers' tags compared byte for
// byte with what was published.
type EdgeResult struct {
	Edge         string   `json:"edge"`
	Viewers      int      `json:"viewers"`
	Joined       int      `json:"joined"`
	Published    uint64   `json:"published_tags"` // tags due at its viewers (from each one's join)
	Delivered    uint64   `json:"delivered_tags"` // intact, in order
	Missing      uint64   `json:"missing_tags"`
	Corrupt      uint64   `json:"corrupt_tags"` // bytes differ, or a tag nobody published
	Duplicate    uint64   `json:"duplicate_tags"`
	Latency      Quantile `json:"latency_ms"` // publisher write → viewer parse
	NetsimLost   float64  `json:"netsim_lost_packets"`
	FECRecovered float64  `json:"fec_recovered_packets"`
	Repaired     float64  `json:"repaired_packets"`
	Skipped      float64  `json:"skipped_packets"`
	// Asked is the packets rtp-reorder asked the cloud for (nacks_sent);
	// more than Repaired when FEC recovered a gap after it was asked for,
	// or the repair came after its gap was skipped (RepairedLate).
	Asked        float64  `json:"repair_asked_packets"`
	RepairedLate float64  `json:"repaired_late_packets"`
	Ended        []string `json:"ended,omitempty"` // viewers that ended early, why
}

// ControlSample is the controller's latest decision, read once a second.
type ControlSample struct {
	Second  float64        `json:"second"`
	Policy  string         `json:"policy"`
	Streams []StreamChoice `json:"streams"`
	// RepairShares is the edges' shares of the repair budget (with
	// --total-rate; none without a budget to share).
	RepairShares *ShareSpread `json:"repair_shares,omitempty"`
	Reason       string       `json:"reason,omitempty"`
	Err          string       `json:"error,omitempty"`
}

// ShareSpread summarises the repair shares of a ControlSample: how the
// controller split quic-retransmit's total_rate among the edges.
type ShareSpread struct {
	Edges int     `json:"edges"`
	Min   float64 `json:"min"`
	Max   float64 `json:"max"`
}

// StreamChoice is one stream's decision in a ControlSample.
type StreamChoice struct {
	SSRC     uint32  `json:"ssrc"`
	Overhead float64 `json:"overhead"`
	Pace     float64 `json:"pace_bytes_per_second"`
}

// edgesMain runs --edges and prints its report; the exit code is 1 when a
// tag was missing or corrupt at some edge or the run failed.
func edgesMain(ctx context.Context, cfg Config, command string, asJSON bool, stdout, stderr io.Writer) int {
	rep, err := RunEdges(ctx, cfg, stderr)
	if rep != nil {
		rep.Command = command
		if !printReport(stdout, stderr, asJSON, rep, rep.writeTable) {
			return 1
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "mediapipe bench:", err)
		return 1
	}
	if !rep.Intact {
		fmt.Fprintln(stderr, "mediapipe bench:", rep.Verdict)
		return 1
	}
	return 0
}

// edgeSite is one edge pipeline's addresses and viewers.
type edgeSite struct {
	name, udp, http string
	viewers         []*viewer
}

// edgeRig is the running cloud, its edges and the meter.
type edgeRig struct {
	rt    *host.Runtime
	stop  func() error
	rtmp  string
	edges []*edgeSite
	meter *groupMeter
}

// RunEdges runs one --edges bench and returns its report; it stops early,
// still reporting, when ctx is cancelled.
func RunEdges(ctx context.Context, cfg Config, stderr io.Writer) (*EdgesReport, error) {
	cfg.defaults()
	cl, err := pickClip(cfg, stderr)
	if err != nil {
		return nil, err
	}
	log := cli.NewLogger(stderr, host.LogConfig{Level: cfg.LogLevel})
	var rig *edgeRig
	for attempt := 1; ; attempt++ {
		rig, err = startEdges(ctx, cfg, log)
		// Ports are picked free and bound a moment later: another process
		// may take one in between, so try fresh ports a few times.
		if err == nil || ctx.Err() != nil || attempt == 3 || !errors.Is(err, errOpen) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	rep := &EdgesReport{Note: multicastNote, LoadStart: loadAvg(), Config: EdgesRunInfo{Edges: cfg.Edges, Streams: cfg.Streams, ViewersPerStream: cfg.Viewers,
		Input: cl.Source, InputKbps: round(cl.Kbps, 1), Loss: cfg.Loss, Burst: cfg.Burst, Seed: cfg.Seed, FEC: cfg.FEC,
		Policy: cfg.Policy, FECGroup: cfg.FECGroup, TotalRate: cfg.TotalRate, ReorderLatencyMS: float64(cfg.ReorderLatency) / 1e6, DurationSeconds: cfg.Duration.Seconds()}}
	if cfg.FEC && cfg.Overhead >= 0 {
		o := cfg.Overhead
		rep.Config.Overhead = &o
	}
	return rep, driveEdges(ctx, cfg, rep, cl, rig)
}

// startEdges writes the cloud and edge pipelines on free loopback ports,
// with the meter as one more udp-sink destination, and starts them.
func startEdges(ctx context.Context, cfg Config, log *slog.Logger) (*edgeRig, error) {
	m, err := newMeter(parityPT)
	if err != nil {
		return nil, err
	}
	rig := &edgeRig{meter: m}
	rtx, err := freeport.UDP()
	if err == nil {
		rig.rtmp, err = freeport.TCP()
	}
	for i := 0; err == nil && i < cfg.Edges; i++ {
		e := &edgeSite{name: fmt.Sprintf("edge%02d", i+1)}
		if e.udp, err = freeport.UDP(); err == nil {
			e.http, err = freeport.TCP()
		}
		rig.edges = append(rig.edges, e)
	}
	if err != nil {
		m.close()
		return nil, fmt.Errorf("%w: %w", errOpen, err)
	}
	rt, stop, err := startText(ctx, edgesTOML(cfg, rig.rtmp, rtx, m.addr(), rig.edges), log)
	if err != nil {
		m.close()
		return nil, err
	}
	rig.rt, rig.stop = rt, stop
	return rig, nil
}

// edgesTOML is the cloud (with fec-encoder unless --fec=false) feeding
// every edge and the meter, and the edges, each udp-source → netsim →
// fec-decoder → rtp-reorder → flv-reassembler → httpflv-sink: loss hits
// before the decoder, as the network's would.
func edgesTOML(cfg Config, rtmp, rtx, meter string, edges []*edgeSite) string {
	dests := make([]string, 0, len(edges)+1)
	for _, e := range edges {
		dests = append(dests, e.udp)
	}
	dests = append(dests, meter)
	cloud := relaytoml.Relay{RTMP: rtmp, RTX: rtx, Destinations: dests, CachePackets: cfg.CachePackets, TotalRate: cfg.TotalRate, ReconnectGrace: "0s",
		BeforeSink: encoderTOML(cfg)}
	var b strings.Builder
	fmt.Fprintf(&b, "# mediapipe bench --edges %d: one cloud, %d edges on loopback", len(edges), len(edges))
	b.WriteString(cloud.Cloud())
	for i, e := range edges {
		r := relaytoml.Relay{EdgeName: e.name, UDP: e.udp, RTX: rtx, HTTP: e.http, Latency: cfg.ReorderLatency}
		if cfg.Loss > 0 {
			seed := cfg.Seed
			if seed != 0 {
				seed += int64(i) // independent loss per edge, reproducible
			}
			r.BeforeReorder = fmt.Sprintf("\n  [[pipeline.stage]]\n  use = \"netsim\"\n  drop = %g\n  burst = %d\n  seed = %d\n", cfg.Loss, cfg.Burst, seed)
		}
		if cfg.FEC {
			r.SourceParams = fmt.Sprintf("  fec_payload_type = %d\n", parityPT)
			r.BeforeReorder += fmt.Sprintf("\n  [[pipeline.stage]]\n  use = \"fec-decoder\"\n  payload_type = %d\n", parityPT)
		}
		b.WriteString(r.Edge())
	}
	return b.String()
}

// encoderTOML is the cloud's fec-encoder table, with only the params the
// flags set (the stage's defaults otherwise); "" with --fec=false.
func encoderTOML(cfg Config) string {
	if !cfg.FEC {
		return ""
	}
	s := fmt.Sprintf("\n  [[pipeline.stage]]\n  use = \"fec-encoder\"\n  payload_type = %d\n", parityPT)
	switch {
	case cfg.Policy != "":
		s += fmt.Sprintf("  policy = %q\n", cfg.Policy)
	case cfg.Overhead >= 0:
		// A fixed overhead asked for alone means a fixed overhead: the
		// default policy would replace it after its first round.
		s += "  policy = \"static\"\n"
	}
	if cfg.Overhead >= 0 {
		s += fmt.Sprintf("  overhead = %g\n", cfg.Overhead)
	}
	if cfg.FECGroup > 0 {
		s += fmt.Sprintf("  group = %d\n", cfg.FECGroup)
	}
	return s
}

// driveEdges publishes, plays every edge, samples the controller each
// second, and fills rep.
func driveEdges(ctx context.Context, cfg Config, rep *EdgesReport, cl *clip, rig *edgeRig) error {
	defer rig.meter.close()
	stopped := false
	stopRelay := func() error {
		if stopped {
			return nil
		}
		stopped = true
		return rig.stop()
	}
	defer func() { _ = stopRelay() }()
	if err := waitEdgesRepair(ctx, rig, 15*time.Second); err != nil {
		return err
	}
	pubCtx, pubCancel := context.WithCancel(ctx)
	defer pubCancel()
	pubs := make([]*publisher, cfg.Streams)
	var all []*viewer
	for i := range pubs {
		pubs[i] = &publisher{addr: rig.rtmp, app: "live", key: streamKey(i), clip: cl, fast: cfg.Fast, ledger: newLedger()}
	}
	streamOf := map[*viewer]int{}
	for _, e := range rig.edges {
		for i := range pubs {
			for range cfg.Viewers {
				v := &viewer{addr: e.http, path: "/live/" + streamKey(i) + ".flv", ledger: pubs[i].ledger, idle: cfg.ViewerIdle, lat: &histogram{}}
				e.viewers = append(e.viewers, v)
				streamOf[v] = i
				all = append(all, v)
			}
		}
	}
	start := time.Now()
	var pwg sync.WaitGroup
	for _, pb := range pubs {
		pwg.Add(1)
		go func() { defer pwg.Done(); _ = pb.run(pubCtx) }()
	}
	aud := startLocal(all, min(500*time.Millisecond, cfg.Duration/4))
	rep.Interrupted = !sampleEdges(ctx, cfg, rep, rig, start)
	// What was published up to now is what every viewer must get; the
	// publishers go on while the viewers catch up, so the tail is not
	// lost to the stream's end (a lost last packet has no successor to
	// reveal its gap).
	cut := make([]int64, len(pubs))
	for i, pb := range pubs {
		cut[i] = int64(pb.tags.Load()) - 1
	}
	for _, v := range all {
		v.cut.Store(cut[streamOf[v]] + 1)
	}
	caughtUp := func() bool {
		for _, v := range all {
			if v.ended.Load() == nil && v.last.Load() < cut[streamOf[v]] {
				return false
			}
		}
		return true
	}
	for deadline := time.Now().Add(cfg.ReorderLatency + 3*time.Second); !caughtUp() && time.Now().Before(deadline) && ctx.Err() == nil; {
		time.Sleep(20 * time.Millisecond)
	}
	rep.Seconds = round(time.Since(start).Seconds(), 2)
	rep.LoadEnd = loadAvg()
	pubCancel()
	pwg.Wait()
	aud.finish(3 * time.Second)
	for _, pb := range pubs {
		if err := pb.lastErr(); err != nil {
			rep.Errors = append(rep.Errors, err.Error())
		}
	}
	if err := stopRelay(); err != nil {
		rep.Errors = append(rep.Errors, "relay: "+err.Error())
	}
	// Counters read once the relay stopped, so they and the meter cover
	// the same packets (a stream's last RTCP goes out as it ends).
	final := gather(rig.rt.Metrics.Registry)
	kernelDrops := udpDrops(rig.meter.addr())
	rig.meter.close()
	mc := rig.meter.counts()
	repaired, _ := final.counter("cloud", "quic-retransmit", "repaired_sent")
	rep.CloudEgress = egressOf(mc, uint64(repaired))
	sink, _ := final.counter("cloud", "udp-sink", "datagrams_sent")
	parity, _ := final.counter("cloud", "fec-encoder", "fec_parity_sent")
	rep.Sent = SentCheck{SinkDatagrams: sink, SinkDatagramsOnce: round(sink/float64(len(rig.edges)+1), 1),
		MeterPackets: mc.media.packets + mc.parity.packets, MeterRTCP: mc.rtcp.packets, ParitySentCounter: parity, MeterKernelDrops: kernelDrops,
		RepairBytesEstimate: "quic-retransmit's repaired_sent packets × the mean media packet's bytes (RTP, without QUIC framing)"}
	if kernelDrops > 0 {
		rep.Errors = append(rep.Errors, fmt.Sprintf("the meter's socket dropped %d datagrams: egress is under-counted", kernelDrops))
	}
	for _, e := range rig.edges {
		rep.Edges = append(rep.Edges, edgeResultOf(e, final, func(v *viewer) (int64, int64) {
			key := int64(-1)
			if at := v.joinedAt.Load(); at != 0 {
				key = pubs[streamOf[v]].ledger.keyAfter(at)
			}
			return key, cut[streamOf[v]]
		}))
	}
	rep.judge()
	sort.Strings(rep.Errors)
	return nil
}

// waitEdgesRepair waits until every edge's repair connection is up: gaps
// in the first packets are otherwise skipped unasked.
func waitEdgesRepair(ctx context.Context, rig *edgeRig, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		g := gather(rig.rt.Metrics.Registry)
		down := 0
		for _, e := range rig.edges {
			if up, ok := g.gauge(e.name, "rtp-reorder", "repair_connected"); ok && up != 1 {
				down++
			}
		}
		if down == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d edges' repair connections were not up within %s", down, d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// sampleEdges waits out the run, reading the controller's decision and
// printing a progress line each second; false when ctx ended it early.
func sampleEdges(ctx context.Context, cfg Config, rep *EdgesReport, rig *edgeRig, start time.Time) bool {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	end := time.NewTimer(cfg.Duration)
	defer end.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-end.C:
			return true
		case now := <-tick.C:
			sec := round(now.Sub(start).Seconds(), 1)
			s, running, static := controlSample(rig.rt, sec)
			if running {
				rep.Control = append(rep.Control, s)
			} else if static != nil {
				rep.StaticOverhead = static
			}
			if cfg.Progress != nil {
				g := gather(rig.rt.Metrics.Registry)
				repaired, _ := g.counter("cloud", "quic-retransmit", "repaired_sent")
				e := egressOf(rig.meter.counts(), uint64(repaired))
				fmt.Fprintf(cfg.Progress, "\r%4.0fs  edges %d  media %.2f MB  parity %.2f MB  repair %.2f MB  egress %.3f × media   ",
					sec, len(rig.edges), float64(e.MediaBytes)/1e6, float64(e.ParityBytes)/1e6, float64(e.RepairBytes)/1e6, e.RatioToMedia)
			}
		}
	}
}

// controlSample reads the latest tick of the stage running a controller
// (control.Reporter) in rt's pipelines. With none, static is fec-encoder's
// overhead for streams nobody set (nil without a fec-encoder).
func controlSample(rt *host.Runtime, sec float64) (s ControlSample, running bool, static *float64) {
	for _, p := range rt.Running() {
		for _, rs := range p.Stages {
			if r, ok := rs.Stage.(control.Reporter); ok {
				t, ok := r.LastTick()
				if ok {
					s = ControlSample{Second: sec, Policy: t.Policy, Reason: t.Decision.Reason, Err: t.Err}
					for ssrc, d := range t.Decision.Streams {
						s.Streams = append(s.Streams, StreamChoice{SSRC: ssrc, Overhead: round(d.Overhead, 4), Pace: round(d.PaceBytesPerSecond, 0)})
					}
					sort.Slice(s.Streams, func(i, j int) bool { return s.Streams[i].SSRC < s.Streams[j].SSRC })
					if t.Input.RepairBudget > 0 && len(t.Decision.RepairShares) > 0 {
						sp := &ShareSpread{Min: math.Inf(1)}
						for _, v := range t.Decision.RepairShares {
							sp.Edges++
							sp.Min, sp.Max = min(sp.Min, round(v, 4)), max(sp.Max, round(v, 4))
						}
						s.RepairShares = sp
					}
					return s, true, nil
				}
				// No round yet (or no controller on): the static overhead.
			}
			// fec-encoder's Overhead(nil) is its default: no stream is nil.
			if o, ok := rs.Stage.(interface{ Overhead(*core.Stream) float64 }); ok {
				v := o.Overhead(nil)
				static = &v
			}
		}
	}
	return ControlSample{}, false, static
}

// edgeResultOf adds up one edge's viewers and its stages' counters;
// window(v) is the first keyframe published after v joined (-1: none) and
// the last tag v is due (see viewerDue).
func edgeResultOf(e *edgeSite, m metricsView, window func(*viewer) (key, cut int64)) EdgeResult {
	r := EdgeResult{Edge: e.name, Viewers: len(e.viewers)}
	lat := &histogram{}
	for _, v := range e.viewers {
		if v.connected.Load() {
			r.Joined++
		}
		got := v.gotDue.Load()
		key, cut := window(v)
		due := viewerDue(v.first.Load(), key, cut, got)
		r.Published += due
		r.Delivered += got
		if due > got {
			r.Missing += due - got
		}
		r.Corrupt += v.corrupt.Load() + v.unknown.Load()
		r.Duplicate += v.dup.Load()
		lat.merge(v.lat)
		if why := v.ended.Load(); why != nil && *why != "response ended" {
			r.Ended = append(r.Ended, *why)
		}
	}
	r.Latency = quantiles(lat)
	r.NetsimLost, _ = m.firstOf("mediapipe_stage_drops_total", e.name, "netsim", "reason", lossReasons...)
	r.FECRecovered, _ = m.counter(e.name, "fec-decoder", "fec_recovered")
	r.Repaired, _ = m.counter(e.name, "rtp-reorder", "repaired")
	r.Skipped, _ = m.firstOf("mediapipe_stage_drops_total", e.name, "rtp-reorder", "reason", skipReasons...)
	r.Asked, _ = m.counter(e.name, "rtp-reorder", "nacks_sent")
	r.RepairedLate, _ = m.counter(e.name, "rtp-reorder", "repaired_after_latency")
	return r
}

// viewerDue is how many published tags a viewer was due, up to cut: from
// the first video keyframe published after it joined (sequence key; -1:
// none), or from its first matched tag (first; -1: none) if that is
// earlier, as when the sink's GOP cache starts it before the join. Starting
// at its first matched tag alone, a lost first keyframe (and what the sink
// skipped until the next) would not count as missing. got is how many due
// tags it got intact (viewer.gotDue).
func viewerDue(first, key, cut int64, got uint64) (due uint64) {
	from := first
	if key >= 0 && (from < 0 || key < from) {
		from = key
	}
	switch {
	case cut < 0:
		return 0
	case from < 0:
		return uint64(cut + 1) // it got nothing at all
	case from > cut:
		return 0
	}
	return max(uint64(cut-from+1), got)
}

// judge sets Intact and Verdict from the edges' results.
func (r *EdgesReport) judge() {
	var missing, corrupt uint64
	var bad []string
	for _, e := range r.Edges {
		missing += e.Missing
		corrupt += e.Corrupt
		if e.Missing > 0 || e.Corrupt > 0 || e.Joined < e.Viewers {
			bad = append(bad, e.Edge)
		}
	}
	r.Intact = len(bad) == 0 && len(r.Edges) > 0 && !r.Interrupted
	switch {
	case r.Intact:
		r.Verdict = fmt.Sprintf("ok: every tag intact at every edge (%d edges, compared byte for byte with what was published)", len(r.Edges))
	case len(r.Edges) == 0:
		r.Verdict = "FAIL: no edge ran"
	case r.Interrupted && len(bad) == 0:
		r.Verdict = "interrupted: the run ended early"
	default:
		r.Verdict = fmt.Sprintf("FAIL: %d tags missing and %d corrupt at %d edges (%s)", missing, corrupt, len(bad), strings.Join(bad, " "))
	}
}

// meterCounts are the bytes and packets the meter read, by kind.
type meterCounts struct{ media, parity, rtcp, other kindCount }

type kindCount struct{ bytes, packets uint64 }

// egressOf is the cloud's egress from what one receiver of the group (the
// meter) got and the repair server's packet count; repair bytes are
// estimated at the mean media packet's size, which is what a repair
// carries (the same RTP packet), QUIC's framing aside.
func egressOf(c meterCounts, repairPackets uint64) Egress {
	e := Egress{MediaBytes: c.media.bytes, ParityBytes: c.parity.bytes, MediaPackets: c.media.packets,
		ParityPackets: c.parity.packets, RepairPackets: repairPackets, RTCPBytes: c.rtcp.bytes}
	if c.media.packets > 0 {
		e.RepairBytes = uint64(float64(repairPackets) * float64(c.media.bytes) / float64(c.media.packets))
	}
	if e.MediaBytes > 0 {
		e.RatioToMedia = round(float64(e.MediaBytes+e.ParityBytes+e.RepairBytes)/float64(e.MediaBytes), 4)
	}
	return e
}

// groupMeter is a UDP receiver the cloud's udp-sink sends to as to any edge:
// it stands for one member of the multicast group and counts what the
// group carries, by payload type.
type groupMeter struct {
	conn     *net.UDPConn
	parityPT uint8
	done     chan struct{}
	once     sync.Once

	media, parity, rtcp, other struct{ bytes, packets atomic.Uint64 }
}

func newMeter(parityPT uint8) (*groupMeter, error) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("meter: %w", err)
	}
	_ = c.SetReadBuffer(4 << 20)
	m := &groupMeter{conn: c, parityPT: parityPT, done: make(chan struct{})}
	go m.read()
	return m, nil
}

func (m *groupMeter) addr() string { return m.conn.LocalAddr().String() }

func (m *groupMeter) read() {
	defer close(m.done)
	buf := make([]byte, 65536)
	for {
		n, _, err := m.conn.ReadFromUDP(buf)
		if err != nil {
			return // closed
		}
		m.count(buf[:n])
	}
}

// count classifies one datagram: RTCP (packet types 200–204), media or
// parity RTP by payload type, or other.
func (m *groupMeter) count(b []byte) {
	k := &m.other
	if len(b) >= 2 && b[0]>>6 == 2 {
		switch pt := b[1]; {
		case pt >= 200 && pt <= 204:
			k = &m.rtcp
		case pt&0x7f == mediaPT:
			k = &m.media
		case pt&0x7f == m.parityPT:
			k = &m.parity
		}
	}
	k.bytes.Add(uint64(len(b)))
	k.packets.Add(1)
}

func (m *groupMeter) counts() meterCounts {
	get := func(k *struct{ bytes, packets atomic.Uint64 }) kindCount {
		return kindCount{bytes: k.bytes.Load(), packets: k.packets.Load()}
	}
	return meterCounts{media: get(&m.media), parity: get(&m.parity), rtcp: get(&m.rtcp), other: get(&m.other)}
}

// close stops the reader and waits for it; safe to call twice.
func (m *groupMeter) close() {
	m.once.Do(func() { _ = m.conn.Close(); <-m.done })
}

// writeTable prints the report for a terminal.
func (r *EdgesReport) writeTable(w io.Writer) {
	c := r.Config
	fec := "off (repair alone)"
	if c.FEC {
		fec = "fec-encoder"
		if c.Policy != "" {
			fec += " policy=" + c.Policy
		}
		if c.Overhead != nil {
			fec += fmt.Sprintf(" overhead=%g", *c.Overhead)
		}
		if c.FECGroup > 0 {
			fec += fmt.Sprintf(" group=%d", c.FECGroup)
		}
	}
	fmt.Fprintf(w, "%s\n", r.Command)
	fmt.Fprintf(w, "edges %d, streams %d × %d viewer(s) per edge, input %s (%.0f kbit/s), loss %g burst %d seed %d, FEC %s, reorder latency %.0f ms, %.1f s, load average %.1f → %.1f\n",
		c.Edges, c.Streams, c.ViewersPerStream, c.Input, c.InputKbps, c.Loss, c.Burst, c.Seed, fec, c.ReorderLatencyMS, r.Seconds, r.LoadStart, r.LoadEnd)
	e := r.CloudEgress
	fmt.Fprintf(w, "\ncloud egress (%s)\n", r.Note)
	fmt.Fprintf(w, "  media   %12d bytes %8d packets\n", e.MediaBytes, e.MediaPackets)
	fmt.Fprintf(w, "  parity  %12d bytes %8d packets\n", e.ParityBytes, e.ParityPackets)
	fmt.Fprintf(w, "  repair  %12d bytes %8d packets (summed over edges; %s)\n", e.RepairBytes, e.RepairPackets, r.Sent.RepairBytesEstimate)
	fmt.Fprintf(w, "  total / media = %.3f\n", e.RatioToMedia)
	fmt.Fprintf(w, "  check: udp-sink sent %.0f datagrams to %d destinations (%.0f each), the meter read %d RTP and %d RTCP packets; fec_parity_sent %.0f\n",
		r.Sent.SinkDatagrams, c.Edges+1, r.Sent.SinkDatagramsOnce, r.Sent.MeterPackets, r.Sent.MeterRTCP, r.Sent.ParitySentCounter)
	fmt.Fprintf(w, "\n%-7s %9s %9s %7s %7s %9s %9s %9s %7s %7s %7s %7s %7s\n", "edge", "published", "delivered", "missing", "corrupt",
		"p50 ms", "p99 ms", "max ms", "lost", "fec", "asked", "repair", "skipped")
	for _, x := range r.Edges {
		fmt.Fprintf(w, "%-7s %9d %9d %7d %7d %9.1f %9.1f %9.1f %7.0f %7.0f %7.0f %7.0f %7.0f\n", x.Edge, x.Published, x.Delivered, x.Missing, x.Corrupt,
			x.Latency.P50, x.Latency.P99, x.Latency.Max, x.NetsimLost, x.FECRecovered, x.Asked, x.Repaired, x.Skipped)
		for _, why := range x.Ended {
			fmt.Fprintf(w, "        a viewer ended: %s\n", why)
		}
	}
	fmt.Fprintln(w, "\ncontroller")
	switch {
	case len(r.Control) > 0:
		prev := ""
		for i, s := range r.Control {
			var parts []string
			for _, st := range s.Streams {
				parts = append(parts, fmt.Sprintf("ssrc %08x overhead %.3f pace %.0f B/s", st.SSRC, st.Overhead, st.Pace))
			}
			line := s.Policy + ": " + strings.Join(parts, "; ")
			if sh := s.RepairShares; sh != nil {
				line += fmt.Sprintf("; repair shares of %d edges %.3f–%.3f", sh.Edges, sh.Min, sh.Max)
			}
			if s.Err != "" {
				line += " (error: " + s.Err + ")"
			}
			// Each change, and the last sample.
			if line != prev || i == len(r.Control)-1 {
				fmt.Fprintf(w, "  %5.1fs %s\n", s.Second, line)
				prev = line
			}
		}
	case r.StaticOverhead != nil:
		fmt.Fprintf(w, "  no controller decision: fec-encoder's static overhead %g\n", *r.StaticOverhead)
	case !c.FEC:
		fmt.Fprintln(w, "  none: no fec-encoder (--fec=false)")
	default:
		fmt.Fprintln(w, "  no decision reported")
	}
	for _, err := range r.Errors {
		fmt.Fprintf(w, "error: %s\n", err)
	}
	fmt.Fprintf(w, "\n%s\n", r.Verdict)
}
