package bench

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/internal/cli"
)

// TestMain lets the test binary serve as the --split viewer process, as
// the mediapipe binary does.
func TestMain(m *testing.M) {
	if IsChild() {
		os.Exit(ChildMain(os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func TestHistogram(t *testing.T) {
	h := &histogram{}
	for i := 1; i <= 1000; i++ {
		h.add(time.Duration(i) * time.Millisecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Millisecond}, {0.99, 990 * time.Millisecond}, {1, time.Second}} {
		got := h.quantile(c.q)
		if d := float64(got-c.want) / float64(c.want); d > 0.03 || d < -0.03 {
			t.Errorf("quantile(%g) = %v, want %v ±3%%", c.q, got, c.want)
		}
	}
	if m := time.Duration(h.max.Load()); m != time.Second {
		t.Errorf("max = %v", m)
	}
	for us := uint64(0); us < 1<<20; us += 7 {
		i := histIndex(us)
		if us < histLow(i) || us >= histLow(i+1) {
			t.Fatalf("%d µs in bucket %d [%d, %d)", us, i, histLow(i), histLow(i+1))
		}
	}
}

func TestSyntheticClip(t *testing.T) {
	c := syntheticClip(600, 10)
	if c.Period < 9900 || c.Period > 10100 {
		t.Errorf("period %d ms, want ~10000", c.Period)
	}
	if c.Kbps < 540 || c.Kbps > 660 {
		t.Errorf("bitrate %.0f kbps, want 600 ±10%%", c.Kbps)
	}
	keys, seen := 0, map[uint64]bool{}
	for _, tg := range c.Media {
		k := tagKey(tg.Type, tg.TS)
		if seen[k] {
			t.Fatalf("duplicate key %d/%d", tg.Type, tg.TS)
		}
		seen[k] = true
		if tg.Key {
			keys++
			if !flv.IsVideoKeyframe(tg.Body) {
				t.Errorf("keyframe at %d does not parse as one", tg.TS)
			}
		}
	}
	if keys != 5 {
		t.Errorf("%d keyframes in 10 s, want 5", keys)
	}
	if len(c.Init) != 3 {
		t.Errorf("%d init tags, want 3", len(c.Init))
	}
}

func TestHelpNamesEveryFlag(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main([]string{"--help"}, &out, &errb); code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	help := errb.String()
	fs, _ := newFlags(&Config{}, io.Discard)
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		n++
		if !strings.Contains(help, "  -"+f.Name+" ") && !strings.Contains(help, "  -"+f.Name+"\n") {
			t.Errorf("--help does not list -%s", f.Name)
		}
		if len(f.Usage) < 10 {
			t.Errorf("-%s has no real description: %q", f.Name, f.Usage)
		}
	})
	if n < 20 { // the flags and the bench's own: a lost flag set shows here
		t.Errorf("only %d flags defined", n)
	}
	if code := Main([]string{"--loss", "2"}, &out, &errb); code != 2 {
		t.Errorf("--loss 2: exit %d, want 2", code)
	}
	if code := Main([]string{"--soak", "5s"}, &out, &errb); code != 2 {
		t.Errorf("--soak 5s: exit %d, want 2", code)
	}
	if code := Main([]string{"--edges", "2", "--viewers", "0"}, &out, &errb); code != 2 {
		t.Errorf("--edges 2 --viewers 0: exit %d, want 2", code)
	}
	if code := Main([]string{"--edges", "65"}, &out, &errb); code != 2 {
		t.Errorf("--edges 65: exit %d, want 2", code)
	}
}

func TestRegistered(t *testing.T) {
	if c, ok := cli.Extra["bench"]; !ok || c.Run == nil {
		t.Fatal("bench is not registered with the CLI")
	}
}

// TestCommand runs `mediapipe bench` with the arguments in
// MEDIAPIPE_BENCH_ARGS (space-separated), for measuring from a checkout:
//
//	MEDIAPIPE_BENCH_ARGS="--streams 10 --viewers 20 --duration 20s --loss 0.05" \
//	  go test -run TestCommand -v -timeout 0 ./internal/bench
func TestCommand(t *testing.T) {
	args := os.Getenv("MEDIAPIPE_BENCH_ARGS")
	if args == "" {
		t.Skip("set MEDIAPIPE_BENCH_ARGS to run mediapipe bench")
	}
	if code := Main(strings.Fields(args), os.Stdout, os.Stderr); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// TestFloorOnly runs `--floor --streams 0`: the raw rates and udp-sink's,
// measured in the same run, with each sender's CPU per packet, its share of
// the batched rate in the report and the JSON, and the load average read at
// the end too.
func TestFloorOnly(t *testing.T) {
	defer func(f func() float64) { loadAvg = f }(loadAvg)
	calls := 0
	loadAvg = func() float64 { calls++; return float64(calls) }
	rep, err := Run(context.Background(), Config{Floor: true, FloorTime: 100 * time.Millisecond}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	f := rep.Floor
	if f == nil {
		t.Fatal("no floor in the report")
	}
	t.Logf("floor: %+v", *f)
	if f.PlainPPS <= 0 || f.BatchedPPS <= 0 || f.SinkPPS <= 0 {
		t.Errorf("floor %+v", *f)
	}
	// The sink sent 1200-byte datagrams a reading receiver got (most of).
	if f.SinkRecvShare <= 0.2 || f.SinkRecvShare > 1.001 {
		t.Errorf("receiver got %.2f of what udp-sink sent", f.SinkRecvShare)
	}
	if f.SinkSendErrors != 0 {
		t.Errorf("udp-sink: %.0f send errors", f.SinkSendErrors)
	}
	// CPU per packet: each sender's own, the receiver's thread (and the
	// generator's) left out, so neither negative nor the whole process's
	// time spread over a handful of packets.
	for name, ns := range map[string]float64{"plain": f.PlainCPU, "batched": f.BatchedCPU, "udp-sink": f.SinkCPU, "udp-sink generator": f.SinkDriverCPU} {
		if ns <= 0 || ns > 1e6 {
			t.Errorf("%s: %.0f ns CPU per packet", name, ns)
		}
	}
	if f.GSOPPS > 0 && (f.GSOCPU <= 0 || math.Abs(f.SinkCPUShareGSO-f.GSOCPU/f.SinkCPU) > 1e-9) {
		t.Errorf("GSO %.0f ns, udp-sink %.0f ns per packet: CPU share %v", f.GSOCPU, f.SinkCPU, f.SinkCPUShareGSO)
	}
	if !strings.Contains(f.SinkSettings, "batch=") {
		t.Errorf("sink settings %q", f.SinkSettings)
	}
	if rep.SinkShare == nil || math.Abs(*rep.SinkShare-f.SinkPPS/f.BatchedPPS) > 0.001 {
		t.Errorf("share %v, want udp-sink %.0f ÷ batched %.0f", rep.SinkShare, f.SinkPPS, f.BatchedPPS)
	}
	if rep.Machine.LoadStart != 1 || rep.Machine.LoadEnd != 2 {
		t.Errorf("load average %v → %v, want read at the start (1) and at the end (2)", rep.Machine.LoadStart, rep.Machine.LoadEnd)
	}
	var js bytes.Buffer
	if err := rep.writeJSON(&js); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(js.String(), `"udp_sink_share_of_floor"`) {
		t.Errorf("JSON lacks udp_sink_share_of_floor:\n%s", js.String())
	}
	var table bytes.Buffer
	rep.writeTable(&table)
	t.Logf("\n%s", table.String())
	if !strings.Contains(table.String(), "floor: udp-sink") || !strings.Contains(table.String(), "floor: CPU per packet") || !strings.Contains(table.String(), "→ 2.0") {
		t.Errorf("table lacks the udp-sink floor or the end load average:\n%s", table.String())
	}
}

// TestFillRatesUseAudienceClock: a --split viewer process's reports reach
// the parent late, by a different lag at each end of the window; what
// viewers read must be timed by the child's stamps, not the parent's window.
func TestFillRatesUseAudienceClock(t *testing.T) {
	t0 := time.Now()
	// The parent's window is 10 s; the child took its reports 9 s apart
	// (the first reached the parent 0.1 s after it was taken, the last 1.1 s).
	from := snapshot{at: t0, cpu: time.Second, mallocs: 1000,
		aud: viewerAgg{At: int64(2 * time.Second), Tags: 100, Bytes: 1_000_000, CPU: int64(time.Second)}}
	to := snapshot{at: t0.Add(10 * time.Second), cpu: 6 * time.Second, mallocs: 101_000,
		aud: viewerAgg{At: int64(11 * time.Second), Tags: 1000, Bytes: 10_000_000, CPU: int64(5500 * time.Millisecond)}}
	r := newReport(Config{Split: true})
	r.fill(Config{Split: true}, from, to, to.at, nil, to.aud, metricsView{})
	if r.Window != 10 {
		t.Errorf("window %v s, want the parent's 10", r.Window)
	}
	if r.Out.Mbps != 8 || r.Out.TagsPerSec != 100 {
		t.Errorf("out %.3f Mbps %.1f tags/s, want 8 and 100 (9 MB and 900 tags over the child's 9 s)", r.Out.Mbps, r.Out.TagsPerSec)
	}
	if r.CPU.ViewerCores != 0.5 {
		t.Errorf("viewer process %.3f cores, want 0.5 (4.5 CPU-s over its 9 s)", r.CPU.ViewerCores)
	}
	if r.CPU.Cores != 0.5 {
		t.Errorf("relay %.3f cores, want 0.5 (5 CPU-s over the parent's 10 s)", r.CPU.Cores)
	}
	if r.Memory.AllocsPerTag != 100 {
		t.Errorf("%.2f allocs per tag, want 100 (10000 allocs/s ÷ 100 tags/s)", r.Memory.AllocsPerTag)
	}
}

// TestAllocsLeaveOutTheMeter: what the bench allocated to measure is not
// charged to the relay, and is stated on its own.
func TestAllocsLeaveOutTheMeter(t *testing.T) {
	t0 := time.Now()
	from := snapshot{at: t0, mallocs: 1000, self: 500, rtp: 0}
	to := snapshot{at: t0.Add(10 * time.Second), mallocs: 41_000, self: 30_500, rtp: 2000}
	cfg := Config{Streams: 1, Viewers: 1}
	r := newReport(cfg)
	r.fill(cfg, from, to, to.at, nil, to.aud, metricsView{})
	if r.Memory.AllocsPerPacket != 5 || r.Memory.MeterPerPacket != 15 {
		t.Errorf("allocs %.2f per packet and the meter's %.2f, want 5 (10000 ÷ 2000) and 15 (30000 ÷ 2000)",
			r.Memory.AllocsPerPacket, r.Memory.MeterPerPacket)
	}
	var b strings.Builder
	r.writeTable(&b)
	if !strings.Contains(b.String(), "5.00 per RTP packet sent") || !strings.Contains(b.String(), "measuring 15.00 per packet more, not counted") {
		t.Errorf("the table does not state both figures:\n%s", b.String())
	}
}

// TestBench runs the whole relay for 3 s with one stream and two viewers
// and checks the report holds real measurements and intact output.
func TestBench(t *testing.T) {
	rep := runChecked(t, Config{Streams: 1, Viewers: 2, Duration: 3 * time.Second, Synthetic: true})
	c := rep.Correctness
	if c.Missing != 0 || c.Duplicate != 0 {
		t.Errorf("at 0 loss: %d missing, %d duplicate tags", c.Missing, c.Duplicate)
	}
	if rep.Viewers.Dropped != 0 {
		t.Errorf("%d viewers dropped: %v", rep.Viewers.Dropped, rep.Viewers.Reasons)
	}
	if rep.Loss.Lost == nil || *rep.Loss.Lost != 0 {
		t.Errorf("lost = %v, want 0 without netsim", na(rep.Loss.Lost))
	}
	if g := rep.Gaps; g.Unexplained != 0 || g.RepairUp == nil || *g.RepairUp != 1 {
		t.Errorf("gaps %+v: want none unexplained and the repair connection up", g)
	}
	var js bytes.Buffer
	if err := rep.writeJSON(&js); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(js.String(), "udp_sink_share") {
		t.Error("JSON states a udp-sink share without --floor measuring it")
	}
}

// TestBenchLoss runs at 5 % loss: repairs must happen and no viewer may
// see a corrupt tag.
func TestBenchLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("6 s relay run under loss")
	}
	rep := runChecked(t, Config{Streams: 2, Viewers: 2, Duration: 6 * time.Second, Synthetic: true, Loss: 0.05, Burst: 2, Seed: 7})
	if rep.Loss.Lost == nil || *rep.Loss.Lost == 0 {
		t.Errorf("netsim lost %s packets at 5 %% loss", na(rep.Loss.Lost))
	}
	if rep.Loss.Repaired == nil || *rep.Loss.Repaired == 0 {
		t.Errorf("repaired = %s, want > 0", na(rep.Loss.Repaired))
	}
	if g := rep.Gaps; g.Unexplained != 0 {
		t.Errorf("%.0f skipped packets unexplained: %+v", g.Unexplained, g)
	}
}

// TestBenchSplit runs the viewers in a child process (this test binary,
// through TestMain) and checks the same figures come back.
func TestBenchSplit(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a second process")
	}
	prof := filepath.Join(t.TempDir(), "mem.pprof")
	rate := runtime.MemProfileRate
	rep := runChecked(t, Config{Streams: 1, Viewers: 3, Duration: 3 * time.Second, Synthetic: true, Split: true, MemProfile: prof})
	if c := rep.Correctness; c.Missing != 0 || c.Duplicate != 0 {
		t.Errorf("at 0 loss: %d missing, %d duplicate tags", c.Missing, c.Duplicate)
	}
	// The child's reports and the meter's gathers are the bench's own.
	if rep.Memory.MeterPerPacket <= 0 {
		t.Errorf("the bench's measuring allocated %.2f per packet, want > 0", rep.Memory.MeterPerPacket)
	}
	for _, f := range []string{prof + ".start", prof} {
		b, err := os.ReadFile(f)
		if err != nil || len(b) < 100 || b[0] != 0x1f || b[1] != 0x8b { // pprof files are gzipped
			t.Errorf("--memprofile %s: %d bytes, %v", f, len(b), err)
		}
	}
	if runtime.MemProfileRate != rate {
		t.Errorf("MemProfileRate left at %d, was %d", runtime.MemProfileRate, rate)
	}
}

func TestParseCPUs(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string
		err  bool
	}{{"", "[]", false}, {"0", "[0]", false}, {"1,0", "[0 1]", false}, {"2-4", "[2 3 4]", false}, {"x", "", true}, {"3-1", "", true}} {
		got, err := parseCPUs(c.in)
		if (err != nil) != c.err {
			t.Errorf("parseCPUs(%q) error %v", c.in, err)
			continue
		}
		if err == nil && fmt.Sprint(got) != c.want {
			t.Errorf("parseCPUs(%q) = %v, want %s", c.in, got, c.want)
		}
	}
}

// runChecked runs cfg, logs the report's table and checks it with
// checkReport; the run's own logs are shown only if it fails.
func runChecked(t *testing.T, cfg Config) *Report {
	t.Helper()
	var logs bytes.Buffer
	rep, err := Run(context.Background(), cfg, &logs)
	if err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
	var table bytes.Buffer
	rep.writeTable(&table)
	t.Logf("\n%s", table.String())
	checkReport(t, rep)
	return rep
}

func checkReport(t *testing.T, rep *Report) {
	t.Helper()
	if rep.Interrupted {
		t.Error("report says interrupted")
	}
	for _, e := range rep.Errors {
		t.Errorf("error: %s", e)
	}
	if rep.In.RTPPerSec <= 0 || rep.In.Mbps <= 0 || rep.In.Tags == 0 {
		t.Errorf("in: %+v", rep.In)
	}
	if rep.Out.Mbps <= 0 || rep.Out.Tags == 0 || rep.Out.RTPPerSec <= 0 {
		t.Errorf("out: %+v", rep.Out)
	}
	if rep.Latency.N == 0 || rep.Latency.P50 <= 0 || rep.Latency.Max < rep.Latency.P99 {
		t.Errorf("latency: %+v", rep.Latency)
	}
	if int(rep.TTFF.N) != rep.Viewers.Wanted || rep.TTFF.P50 <= 0 {
		t.Errorf("time to first frame: %+v for %d viewers", rep.TTFF, rep.Viewers.Wanted)
	}
	if rep.Viewers.Joined != rep.Viewers.Wanted {
		t.Errorf("%d of %d viewers joined", rep.Viewers.Joined, rep.Viewers.Wanted)
	}
	if rep.CPU.Seconds <= 0 || rep.Memory.PeakRSSMB <= 0 || rep.Memory.AllocsPerPacket <= 0 {
		t.Errorf("cpu %+v memory %+v", rep.CPU, rep.Memory)
	}
	c := rep.Correctness
	if c.Matched == 0 || c.Corrupt != 0 || c.Unknown != 0 {
		t.Errorf("correctness: %+v", c)
	}
}

func TestEndReason(t *testing.T) {
	for _, c := range []struct {
		err    error
		joined bool
		want   string
	}{
		{io.EOF, true, "response ended"},
		{fmt.Errorf("reading: %w", io.ErrUnexpectedEOF), true, "response cut mid-tag"},
		{&net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, true, "no data for --viewer-timeout"},
		{&net.OpError{Op: "dial", Err: os.ErrDeadlineExceeded}, false, "no answer to connect or GET within --viewer-timeout"},
		{errors.New("HTTP 503 from 127.0.0.1:8080"), false, "HTTP 503 from ADDR"},
	} {
		if got := endReason(c.err, c.joined); got != c.want {
			t.Errorf("endReason(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}
