// Package bench is `mediapipe bench`: it runs a cloud and an edge relay in
// one process, drives them with RTMP publishers and HTTP-FLV viewers, and reports throughput, latency, loss and cost.
package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/host"
	"github.com/mediapipe/mediapipe/internal/cli"
	"github.com/mediapipe/mediapipe/internal/procs"
)

func init() {
	cli.Extra["bench"] = cli.Command{Summary: "measure the relay under load", Run: Main}
}

// Config is one bench run.
type Config struct {
	Streams        int
	Viewers        int // per stream
	Duration       time.Duration
	Loss           float64
	Burst          int
	Seed           int64
	Input          string // FLV file; "" generates one
	Synthetic      bool
	Kbps           int
	ClipSeconds    int
	Fast           bool
	Floor          bool
	FloorTime      time.Duration
	ReorderLatency time.Duration
	CachePackets   int
	ViewerIdle     time.Duration
	LogLevel       string
	CPUProfile     string        // file for a CPU profile of the measured run; "" none
	MemProfile     string        // file for an allocation profile of the measured window; "" none
	Split          bool          // viewers in a child process
	RelayCPUs      []int         // pin this process (relay + publishers) to these CPUs
	ViewerCPUs     []int         // pin the viewer process to these CPUs (with Split)
	Progress       io.Writer     // nil: no progress line
	Soak           time.Duration // > 0: a soak of this length instead of a measured run
	SoakEvery      time.Duration // how often the soak samples; 0 picks from Soak
	TotalRate      int           // with Edges: quic-retransmit's total_rate; 0 none
	Plugin         string        // plugin binary run as a stage after flv-reassembler on the edge; "" none
	HLSURL         string        // instead of the relay: an LL-HLS audience of this playlist (hlsload.go)
	HLSViewers     int
	HLSConns       int
	HLSCA          string
	HLSServerPID   int

	// --edges mode (edges.go): one cloud and Edges edge pipelines, each
	// edge with its own netsim loss before its fec-decoder.
	Edges    int
	FEC      bool    // a fec-encoder on the cloud (false: repair alone)
	Policy   string  // fec-encoder's policy param; "" leaves it out
	Overhead float64 // fec-encoder's fixed overhead; < 0 leaves it out
	FECGroup int     // fec-encoder's group; 0 leaves it out
}

const usageText = `Usage: mediapipe bench [flags]

Runs a cloud and an edge pipeline in this process (the stages of
pipeline.example.toml, on free loopback ports), publishes N streams to the
cloud over RTMP and plays each on the edge with M HTTP-FLV viewers, then
prints packets/s and Mbps in and out, CPU per delivered viewer-Mbps,
publisher→viewer latency per tag (p50/p99/max), time to first frame, packets
lost/repaired/skipped, viewers dropped, RSS and allocations per packet, and
checks every tag each viewer got against what was published.

CPU, RSS and allocations are the whole process's: they include the bench's
own publishers and viewers, unless --split runs the viewers in a child
process (then --relay-cpus/--viewer-cpus can pin each side to its cores;
what viewers read is timed by the child's own clock). What the bench
allocates to measure (gathering the metrics each second, reading the viewer
process's reports) is left out of the allocations and printed beside them.

--floor first measures the machine's raw loopback UDP send rate (plain,
batched, GSO), then the udp-sink stage sending the same 1200-byte datagrams
to the same kind of receiver, and prints the sink's rate as a share of the
raw batched one (udp_sink_share_of_floor in --json), and each sender's CPU
per packet, the receiver's thread and the sink's generator left out
(udp_sink_cpu_share_of_gso: GSO's CPU per packet ÷ the sink's).
Exit status: 0 when the run finished with intact output, 1 when a viewer
got corrupt tags, the relay failed, or rtp-reorder skipped more packets than
the drop counters (netsim, the queues between rtp-fragmenter and rtp-reorder,
the edge socket's kernel drops) explain; 2 for bad flags.

Examples:
  mediapipe bench --streams 10 --viewers 20 --duration 20s --loss 0.05
  mediapipe bench --synthetic --fast --streams 4 --viewers 1 --duration 10s
  mediapipe bench --floor --streams 0
  mediapipe bench --streams 1 --viewers 1500 --split --relay-cpus 0 --viewer-cpus 1 --duration 30s
  mediapipe bench --soak 10m --streams 6 --viewers 3 --plugin ./stream-filter
  mediapipe bench --edges 16 --bitrate 4000 --synthetic --loss 0.05 --overhead 0.2
  mediapipe bench --hls-url http://127.0.0.1:8888/live/movie/index.m3u8 --hls-viewers 1000 --duration 30s

--hls-url URL runs no relay: it plays URL (an HLS playlist served by any
server) with --hls-viewers low-latency players for --duration, each making
blocking playlist reloads (_HLS_msn/_HLS_part) and fetching every new part
(or segment, for plain HLS) over at most --hls-conns keep-alive connections
of its own, and prints requests, parts, bytes, errors, this process's CPU
and, with --hls-server-pid, the server's CPU per viewer (or measure it with
perf stat -p PID). Exit status 1 when a request failed.

--edges N runs one cloud and N edge pipelines instead (--streams
publishers, --viewers viewers per stream on every edge), each edge with
its own netsim loss (--loss, --burst, seed --seed+i) between its udp-source
and its fec-decoder, and reports the cloud's egress split into media,
parity and repair bytes and their ratio to the media: media and parity
counted once, as one multicast group carries them to every edge (the
bench sends a unicast copy to each edge's port, and one to a meter of its
own that counts them), repair summed over the edges. Per edge it prints
tags published and delivered (compared byte for byte), missing and
corrupt, latency, packets lost, recovered by FEC, repaired and skipped;
and once a second the controller's overhead and pacing per stream (or
fec-encoder's static overhead). --fec=false runs without FEC (repair
alone); --overhead, --policy and --fec-group set fec-encoder's params.
Exit status 1 when a tag is missing or corrupt at an edge.

--soak D runs the relay for D under churn, loss, plugin kills and junk at
every listener, and prints each sampled figure's start, peak, end and trend
(as a Markdown table docs/reliability.md can quote); it exits 1 when a
figure grows through the second half of the run (its fitted line rises by
more than 10 % of its mean and more than a floor), a tag is corrupt, the
plugin is not restarted or the relay fails.

Flags:
`

// Main runs `mediapipe bench` and returns the exit code: 0 when the run
// finished with correct output, 1 when a viewer saw corrupt tags, the relay
// failed or gaps were skipped that no counter explains, 2 for bad flags.
func Main(args []string, stdout, stderr io.Writer) int {
	if IsChild() {
		return ChildMain(stdout, stderr)
	}
	var cfg Config
	fs, opt := newFlags(&cfg, stderr)
	if err := fs.Parse(args); err != nil {
		return cli.FlagExit(err)
	}
	if cfg.Soak > 0 && cfg.Loss == 0 {
		cfg.Loss = soakLoss
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "mediapipe bench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	var perr error
	if cfg.RelayCPUs, perr = parseCPUs(*opt.relayCPUs); perr == nil {
		cfg.ViewerCPUs, perr = parseCPUs(*opt.viewerCPUs)
	}
	if perr != nil {
		fmt.Fprintln(stderr, "mediapipe bench:", perr)
		return 2
	}
	if err := cfg.check(); err != nil {
		fmt.Fprintln(stderr, "mediapipe bench:", err)
		return 2
	}
	if !*opt.quiet {
		cfg.Progress = stderr
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); stop() }() // a second Ctrl-C kills at once
	if !cfg.Floor {                      // the floor's senders and receivers each need a P of their own
		// As `mediapipe run` does, so the bench measures what production runs.
		defer procs.New(slog.New(slog.DiscardHandler)).Start(ctx)()
	}

	if cfg.Edges > 0 {
		set := false
		fs.Visit(func(f *flag.Flag) { set = set || f.Name == "reorder-latency" })
		if !set {
			cfg.ReorderLatency = edgesReorderLatency
		}
		return edgesMain(ctx, cfg, "mediapipe bench "+strings.Join(args, " "), *opt.asJSON, stdout, stderr)
	}
	if cfg.HLSURL != "" {
		return hlsMain(ctx, cfg, *opt.asJSON, stdout, stderr)
	}
	if cfg.Soak > 0 {
		return soakMain(ctx, cfg, "mediapipe bench "+strings.Join(args, " "), *opt.asJSON, stdout, stderr)
	}
	rep, err := Run(ctx, cfg, stderr)
	if rep != nil {
		rep.Command = "mediapipe bench " + strings.Join(args, " ")
		if !printReport(stdout, stderr, *opt.asJSON, rep, rep.writeTable) {
			return 1
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "mediapipe bench:", err)
		return 1
	}
	if rep.Correctness.Corrupt > 0 {
		fmt.Fprintf(stderr, "mediapipe bench: %d corrupt tags reached viewers\n", rep.Correctness.Corrupt)
		return 1
	}
	if rep.Gaps.Unexplained > 0 {
		fmt.Fprintf(stderr, "mediapipe bench: FAIL: %.0f skipped packets that no drop counter explains (skipped %.0f, explained %.0f): packets vanished unseen\n",
			rep.Gaps.Unexplained, rep.Gaps.Skipped, rep.Gaps.Explained)
		return 1
	}
	return 0
}

// cliOpts are the flags that are not Config fields.
type cliOpts struct {
	relayCPUs, viewerCPUs *string
	asJSON, quiet         *bool
}

// newFlags defines every flag of `mediapipe bench`; --help prints them all.
func newFlags(cfg *Config, stderr io.Writer) (*flag.FlagSet, *cliOpts) {
	opt := &cliOpts{}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usageText)
		fs.PrintDefaults()
	}
	fs.IntVar(&cfg.Streams, "streams", 1, "publishers, one stream each (live/s001, live/s002, …); 0 with --floor measures only the floor")
	fs.IntVar(&cfg.Viewers, "viewers", 1, "HTTP-FLV viewers per stream, each on its own TCP connection")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long publishers push (the measured window starts once every viewer has joined)")
	fs.Float64Var(&cfg.Loss, "loss", 0, "share of RTP packets netsim drops between cloud and edge (0.05 = 5 %); 0: no netsim stage")
	fs.IntVar(&cfg.Burst, "burst", 1, "packets lost in a row per loss event (netsim burst; the overall share stays --loss)")
	fs.Int64Var(&cfg.Seed, "seed", 1, "netsim's random seed (0: random)")
	fs.StringVar(&cfg.Input, "input", "", "FLV file each publisher pushes in a loop (default: a clip made by ffmpeg, cached; --synthetic without ffmpeg)")
	fs.BoolVar(&cfg.Synthetic, "synthetic", false, "push FLV tags made in Go (realistic sizes and timing, random bodies) instead of a real H.264/AAC clip")
	fs.IntVar(&cfg.Kbps, "bitrate", 600, "kbit/s of the generated or synthetic input (audio 64 kbit/s of it)")
	fs.IntVar(&cfg.ClipSeconds, "clip", 10, "seconds of the generated or synthetic input before it loops")
	fs.BoolVar(&cfg.Fast, "fast", false, "push as fast as the relay takes it instead of in real time (a stress: queues fill, tags drop, latency grows)")
	fs.BoolVar(&cfg.Floor, "floor", false, "before the run, measure the raw loopback UDP send rate of 1200-byte datagrams (WriteToUDP; WriteBatch of 64 and UDP GSO runs of 48 on a connected socket), then drive the udp-sink stage (the relay's settings) flat out with 1200-byte RTP packets to the same kind of reading receiver and state its rate as a share of the raw ones (with --floor the whole run keeps the runtime's default GOMAXPROCS: the floor's senders and receivers each need a thread, so the governor that fits GOMAXPROCS to the load is off)")
	fs.DurationVar(&cfg.FloorTime, "floor-time", time.Second, "how long each of the four --floor measurements sends")
	fs.DurationVar(&cfg.ReorderLatency, "reorder-latency", 80*time.Millisecond, "rtp-reorder's latency: how long a gap waits for repair")
	fs.IntVar(&cfg.CachePackets, "cache-packets", 5000, "quic-retransmit's cache_packets per stream")
	fs.DurationVar(&cfg.ViewerIdle, "viewer-timeout", 5*time.Second, "a viewer that reads nothing for this long gives up (counted as dropped)")
	fs.StringVar(&cfg.LogLevel, "log-level", "error", "level of the pipelines' logs on stderr: debug, info, warn, error")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write a CPU profile of the run (pipelines and load generators) to this file, for go tool pprof")
	fs.StringVar(&cfg.MemProfile, "memprofile", "", "write an allocation profile (every 4 KiB allocated is sampled, runtime.MemProfileRate) of the relay process to this file when the measured window closes, and one when it opens to FILE.start: go tool pprof -sample_index=alloc_objects -diff_base FILE.start <binary> FILE shows the window's allocations alone (relay and publishers; with --split not the viewers)")
	fs.BoolVar(&cfg.Split, "split", false, "run the viewers in a child process, so CPU, RSS and allocations are the relay's (and publishers') alone; latency then counts from when each tag was due, not written")
	opt.relayCPUs = fs.String("relay-cpus", "", "pin the relay process to these CPUs (e.g. 0 or 0-1), for one-core figures")
	opt.viewerCPUs = fs.String("viewer-cpus", "", "with --split: pin the viewer process to these CPUs (e.g. 1)")
	fs.DurationVar(&cfg.Soak, "soak", 0, "instead of a measured run, soak the relay this long: publishers come and go (--streams slots), viewers join and leave (--viewers per stream), netsim drops --loss (default 0.02 here), the --plugin is killed now and then and junk hits every listener; RSS, goroutines, open fds and kernel TCP memory are sampled and the soak fails if one grows through the second half or a tag is corrupt")
	fs.DurationVar(&cfg.SoakEvery, "soak-every", 0, "how often --soak samples (default: the soak's length / 200, between 1s and 5s)")
	fs.StringVar(&cfg.Plugin, "plugin", "", "a plugin binary (e.g. plugins/examples/stream-filter built) to run as an edge stage after flv-reassembler; --soak kills its process now and then")
	fs.StringVar(&cfg.HLSURL, "hls-url", "", "instead of the relay: play this HLS playlist URL with --hls-viewers low-latency players for --duration")
	fs.IntVar(&cfg.HLSViewers, "hls-viewers", 100, "with --hls-url: players at once, joining over the first second")
	fs.IntVar(&cfg.HLSConns, "hls-conns", 2, "with --hls-url: keep-alive connections per player, at most")
	fs.StringVar(&cfg.HLSCA, "hls-ca", "", "with --hls-url: PEM CA file to verify an https server with (default: the system's roots)")
	fs.IntVar(&cfg.HLSServerPID, "hls-server-pid", 0, "with --hls-url: the server's process ID on this machine, to report its CPU over the run and per viewer")
	fs.IntVar(&cfg.Edges, "edges", 0, "run one cloud and this many edge pipelines (each with its own netsim --loss/--burst, seed --seed+i, before a fec-decoder) and report the cloud's egress split into media, parity and repair bytes, and each edge's delivery checked tag by tag; --reorder-latency defaults to 150ms here")
	fs.BoolVar(&cfg.FEC, "fec", true, "with --edges: a fec-encoder on the cloud and a fec-decoder on each edge; --fec=false repairs losses by retransmission alone")
	fs.StringVar(&cfg.Policy, "policy", "", "with --edges: fec-encoder's policy (empty: the stage's default)")
	fs.Float64Var(&cfg.Overhead, "overhead", -1, "with --edges: fec-encoder's fixed overhead, parity per source packet, with policy static unless --policy is given (negative: the stage's default)")
	fs.IntVar(&cfg.TotalRate, "total-rate", 0, "with --edges: quic-retransmit's total_rate, bytes/s of repair shared among the edges by the controller (0: none, each edge limited by max_rate alone)")
	fs.IntVar(&cfg.FECGroup, "fec-group", 0, "with --edges: fec-encoder's group, source packets per parity group (0: the stage's default)")
	opt.asJSON = fs.Bool("json", false, "print the report as JSON instead of a table")
	opt.quiet = fs.Bool("quiet", false, "no progress line on stderr")
	return fs, opt
}

func (c *Config) check() error {
	switch {
	case c.Streams < 0 || c.Streams > 10000:
		return errors.New("--streams: 0 to 10000")
	case c.Streams == 0 && !c.Floor:
		return errors.New("--streams 0 only makes sense with --floor")
	case c.Viewers < 0 || c.Viewers > 100000:
		return errors.New("--viewers: 0 to 100000")
	case c.Duration < time.Second:
		return errors.New("--duration: at least 1s")
	case c.Loss < 0 || c.Loss >= 1:
		return errors.New("--loss: from 0 up to (not including) 1")
	case c.Burst < 1:
		return errors.New("--burst: at least 1")
	case c.Kbps < 100 || c.Kbps > 100000:
		return errors.New("--bitrate: 100 to 100000 kbit/s")
	case c.ClipSeconds < 2 || c.ClipSeconds > 600:
		return errors.New("--clip: 2 to 600 seconds")
	case c.Input != "" && c.Synthetic:
		return errors.New("--input and --synthetic exclude each other")
	case c.FloorTime <= 0:
		return errors.New("--floor-time: must be positive")
	case c.CachePackets < 1:
		return errors.New("--cache-packets: at least 1")
	case c.ViewerIdle <= 0:
		return errors.New("--viewer-timeout: must be positive")
	case len(c.ViewerCPUs) > 0 && !c.Split:
		return errors.New("--viewer-cpus needs --split")
	case c.Soak < 0 || c.Soak > 0 && c.Soak < 10*time.Second:
		return errors.New("--soak: at least 10s")
	case c.Soak > 0 && (c.Split || c.Fast || c.Floor):
		return errors.New("--soak excludes --split, --fast and --floor")
	case c.HLSURL != "" && (c.HLSViewers < 1 || c.HLSViewers > 100000):
		return errors.New("--hls-viewers: 1 to 100000")
	case c.HLSURL != "" && (c.HLSConns < 1 || c.HLSConns > 16):
		return errors.New("--hls-conns: 1 to 16")
	case c.HLSURL != "" && (c.Soak > 0 || c.Floor || c.Split):
		return errors.New("--hls-url excludes --soak, --floor and --split")
	case c.Edges < 0 || c.Edges > 64:
		return errors.New("--edges: 0 to 64 (quic-retransmit's max_peers)")
	case c.Edges > 0 && (c.Soak > 0 || c.Floor || c.Split || c.HLSURL != "" || c.Plugin != ""):
		return errors.New("--edges excludes --soak, --floor, --split, --hls-url and --plugin")
	case c.Edges > 0 && (c.Viewers < 1 || c.Streams < 1):
		return errors.New("--edges needs at least one stream and one viewer per stream: each edge's delivery is checked through its viewers")
	case c.Overhead > 1:
		return errors.New("--overhead: at most 1")
	case c.FECGroup < 0 || c.FECGroup > 64:
		return errors.New("--fec-group: 0 to 64")
	case c.Split && c.Fast:
		return errors.New("--split needs real time: the viewer process derives publish times from the clip's timestamps")
	}
	return nil
}

func (c *Config) defaults() {
	if c.Burst < 1 {
		c.Burst = 1
	}
	if c.Kbps == 0 {
		c.Kbps = 600
	}
	if c.ClipSeconds == 0 {
		c.ClipSeconds = 10
	}
	if c.FloorTime == 0 {
		c.FloorTime = time.Second
	}
	if c.ReorderLatency == 0 {
		c.ReorderLatency = 80 * time.Millisecond
	}
	if c.CachePackets == 0 {
		c.CachePackets = 5000
	}
	if c.ViewerIdle == 0 {
		c.ViewerIdle = 5 * time.Second
	}
	if c.LogLevel == "" {
		c.LogLevel = "error"
	}
}

// pickClip loads --input, or makes a clip with ffmpeg, or synthesizes one.
func pickClip(cfg Config, log io.Writer) (*clip, error) {
	switch {
	case cfg.Input != "":
		return loadClip(cfg.Input)
	case cfg.Synthetic:
		return syntheticClip(cfg.Kbps, cfg.ClipSeconds), nil
	}
	c, err := generatedClip(cfg.Kbps, cfg.ClipSeconds)
	if err != nil {
		fmt.Fprintf(log, "mediapipe bench: no generated clip (%v); pushing synthetic tags\n", err)
		return syntheticClip(cfg.Kbps, cfg.ClipSeconds), nil
	}
	return c, nil
}

// snapshot is the cumulative counters at one moment.
type snapshot struct {
	at       time.Time
	cpu      time.Duration
	mallocs  uint64
	self     uint64 // of mallocs, the bench's own measuring (selfCount)
	pubTags  uint64
	pubBytes uint64
	rtp      float64
	edgeRTP  float64
	aud      viewerAgg // what viewers read: Tags, Bytes, stamped by At
}

// Run runs one bench and returns its report. It stops early, still
// reporting, when ctx is cancelled.
func Run(ctx context.Context, cfg Config, stderr io.Writer) (*Report, error) {
	cfg.defaults()
	if cfg.MemProfile != "" {
		// Set before the relay starts, so its per-packet allocations are
		// sampled from the first; restored for whoever runs next in-process.
		defer func(old int) { runtime.MemProfileRate = old }(runtime.MemProfileRate)
		runtime.MemProfileRate = profileRate
	}
	rep := newReport(cfg)
	if cfg.Floor {
		if err := rep.addFloor(ctx, cfg.FloorTime); err != nil {
			return rep, err
		}
	}
	if cfg.Streams == 0 || ctx.Err() != nil {
		rep.Interrupted = ctx.Err() != nil
		rep.Machine.LoadEnd = loadAvg() // fill, which sets it otherwise, does not run
		return rep, nil
	}
	cl, err := pickClip(cfg, stderr)
	if err != nil {
		return nil, err
	}
	rep.Config.Input = cl.Source
	rep.Config.InputKbps = round(cl.Kbps, 1)
	rl, err := launchRelay(ctx, cfg, stderr)
	if err != nil {
		return nil, err
	}
	return drive(ctx, cfg, rep, cl, rl)
}

// addFloor measures the loopback floor and states the udp-sink's share of it.
func (r *Report) addFloor(ctx context.Context, d time.Duration) error {
	f, err := measureFloor(ctx, d)
	if err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	r.Floor = &f
	if f.BatchedPPS > 0 && f.SinkPPS > 0 {
		s := round(f.SinkPPS/f.BatchedPPS, 4)
		r.SinkShare = &s
	}
	return nil
}

// launchRelay pins this process if asked and starts the relay with the
// pipelines logging to stderr at cfg.LogLevel.
func launchRelay(ctx context.Context, cfg Config, stderr io.Writer) (*relay, error) {
	if len(cfg.RelayCPUs) > 0 {
		if err := pinProcess(cfg.RelayCPUs); err != nil {
			return nil, err
		}
	}
	log := cli.NewLogger(stderr, host.LogConfig{Level: cfg.LogLevel})
	for attempt := 1; ; attempt++ {
		rl, err := startRelay(ctx, cfg, log)
		// Ports are picked free and bound a moment later: another process
		// may take one in between, so try fresh ports a few times.
		if err == nil || ctx.Err() != nil || attempt == 3 || !errors.Is(err, errOpen) {
			return rl, err
		}
	}
}

// drive runs the publishers and viewers against the relay for the run's
// duration, stops everything and fills rep with what was measured.
func drive(ctx context.Context, cfg Config, rep *Report, cl *clip, rl *relay) (*Report, error) {
	pubCtx, pubCancel := context.WithCancel(ctx)
	defer pubCancel()
	pubs, viewers := newLoad(cfg, rl.ports, cl)
	self := &selfCount{}
	if cfg.CPUProfile != "" {
		stopProfile, err := startProfile(cfg.CPUProfile)
		if err != nil {
			_ = rl.stop()
			return nil, err
		}
		defer stopProfile()
	}
	// Publish only once the edge's repair connection is up: gaps in the
	// first packets are otherwise skipped unasked (the QUIC handshake is
	// slow on a loaded machine), which is the bench's start, not the relay's.
	if err := waitRepair(ctx, rl.rt, 10*time.Second); err != nil {
		_ = rl.stop()
		return nil, err
	}
	start := time.Now()
	var pwg sync.WaitGroup
	for _, pb := range pubs {
		pwg.Add(1)
		go func() { defer pwg.Done(); _ = pb.run(pubCtx) }()
	}
	aud, err := startAudience(ctx, cfg, rl.ports, pubs, viewers, self)
	if err != nil {
		pubCancel()
		pwg.Wait()
		_ = rl.stop()
		return nil, err
	}
	m := meter{rt: rl.rt, pubs: pubs, aud: aud, repairDown: new(int), self: self}
	var profErrs []error
	if cfg.MemProfile != "" {
		m.opened = func() { profErrs = append(profErrs, writeAllocProfile(cfg.MemProfile+".start")) }
	}
	from, to, complete := m.watch(ctx, cfg, start)
	if cfg.MemProfile != "" {
		profErrs = append(profErrs, writeAllocProfile(cfg.MemProfile))
	}
	stopAt := time.Now()
	if cfg.Progress != nil {
		fmt.Fprintln(cfg.Progress)
	}
	rep.Interrupted = !complete

	// Stop publishing; the stream end reaches the edge, whose sink ends
	// each response. Viewers still reading after a grace period are cut.
	pubCancel()
	pwg.Wait()
	agg := aud.finish(3 * time.Second)
	final := gather(rl.rt.Metrics.Registry)
	kernelDrops := udpDrops(rl.ports.UDP) // before the socket closes
	relayErr := rl.stop()

	rep.fill(cfg, from, to, stopAt, pubs, agg, final)
	rep.Gaps = explainGaps(final, kernelDrops)
	rep.Gaps.RepairDownSeconds = *m.repairDown
	if relayErr != nil {
		rep.Errors = append(rep.Errors, "relay: "+relayErr.Error())
	}
	if agg.ChildErr != "" {
		rep.Errors = append(rep.Errors, agg.ChildErr)
	}
	if err := errors.Join(profErrs...); err != nil {
		rep.Errors = append(rep.Errors, err.Error())
	}
	sort.Strings(rep.Errors)
	return rep, nil
}

// waitRepair waits until the edge's rtp-reorder says its repair connection
// is up (its repair_connected gauge is 1), or d has passed.
func waitRepair(ctx context.Context, rt *host.Runtime, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		up, ok := gather(rt.Metrics.Registry).gauge("edge", "rtp-reorder", "repair_connected")
		if !ok || up == 1 {
			return nil // no such gauge: nothing to wait for
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the edge's repair connection was not up within %s", d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// newLoad makes one publisher per stream and, unless the viewers run in a
// child process, cfg.Viewers viewers of each.
func newLoad(cfg Config, p ports, cl *clip) ([]*publisher, []*viewer) {
	pubs := make([]*publisher, cfg.Streams)
	var viewers []*viewer
	for i := range pubs {
		pubs[i] = &publisher{addr: p.RTMP, app: "live", key: streamKey(i), clip: cl, fast: cfg.Fast, ledger: newLedger()}
		if !cfg.Split {
			for range cfg.Viewers {
				viewers = append(viewers, &viewer{addr: p.HTTP, path: "/live/" + streamKey(i) + ".flv", ledger: pubs[i].ledger, idle: cfg.ViewerIdle, lat: &histogram{}})
			}
		}
	}
	return pubs, viewers
}

// startProfile starts a CPU profile into path; stop ends it and closes the file.
func startProfile(path string) (stop func(), err error) {
	pf, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(pf); err != nil {
		pf.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); pf.Close() }, nil
}

// profileRate is runtime.MemProfileRate with --memprofile: one sample per
// 4 KiB allocated sees even the small per-packet allocations, at a cost that
// stays well under the run's CPU.
const profileRate = 4096

// writeAllocProfile writes the process's allocation profile so far to path.
// A GC first, because the profile counts only up to the last completed cycle
// and a relay that allocates little may not have had one for a while.
func writeAllocProfile(path string) error {
	runtime.GC()
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("memprofile: %w", err)
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("memprofile: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("memprofile: %w", err)
	}
	return nil
}

// startAudience starts the viewers, joining over the first seconds of the
// run: here, or in a child process with --split.
func startAudience(ctx context.Context, cfg Config, p ports, pubs []*publisher, viewers []*viewer, self *selfCount) (audience, error) {
	spread := 2 * time.Second
	if cfg.Duration < 4*time.Second {
		spread = cfg.Duration / 4
	}
	if cfg.Split {
		ca, err := startChildFor(ctx, cfg, p, pubs, spread, self)
		if err != nil {
			return nil, err
		}
		return ca, nil
	}
	return startLocal(viewers, spread), nil
}

// meter reads the run's cumulative counters: the relay's metrics, the
// publishers' and the audience's.
type meter struct {
	rt   *host.Runtime
	pubs []*publisher
	aud  audience
	// repairDown counts the progress ticks (seconds) at which the edge's
	// repair connection was down: gaps then are skipped unasked.
	repairDown *int
	opened     func() // called once when the measured window opens; nil: nothing
	self       *selfCount
}

// selfCount counts the heap allocations the bench makes to measure the
// relay (gathering its registry, decoding the viewer process's reports,
// writing --memprofile), so the report states them apart rather than charge
// them to the relay: at 1 Mbit/s they were most of the process's. Each is
// the process's mallocs around such a step, so what the relay allocates in
// those few milliseconds is counted with them.
type selfCount struct{ n atomic.Uint64 }

// since adds the process's allocations since from (a mallocs reading).
func (c *selfCount) since(from uint64) { c.n.Add(mallocs() - from) }

// snap reads the counters; mallocs first, so what the reading itself
// allocates falls after it.
func (m meter) snap() snapshot {
	return m.snapWith(nil)
}

// snapWith is snap with the registry already gathered (nil: gather it).
func (m meter) snapWith(g *metricsView) snapshot {
	s := snapshot{at: time.Now(), cpu: cpuTime(), mallocs: mallocs(), self: m.self.n.Load()}
	if g == nil {
		v := gather(m.rt.Metrics.Registry)
		g = &v
	}
	for _, pb := range m.pubs {
		s.pubTags += pb.tags.Load()
		s.pubBytes += pb.bytes.Load()
	}
	s.rtp, _ = g.sum("mediapipe_stage_packets_in_total", map[string]string{"pipeline": "cloud", "stage": "udp-sink"})
	s.edgeRTP, _ = g.sum("mediapipe_stage_packets_out_total", map[string]string{"pipeline": "edge", "stage": "udp-source"})
	s.aud = m.aud.stats()
	return s
}

// watch waits out the run from start, printing a progress line each second,
// and returns the counters at both ends of the measured window: it opens
// once every viewer has joined (or a third of the run has passed) and closes
// when the run ends. complete is false when ctx ended the run early.
func (m meter) watch(ctx context.Context, cfg Config, start time.Time) (from, to snapshot, complete bool) {
	end := start.Add(cfg.Duration)
	opened := false
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	poll := time.NewTimer(time.Hour) // reused: a time.After per loop would allocate
	defer poll.Stop()
	prev := m.snap()
loop:
	for {
		now := time.Now()
		if !opened {
			b := mallocs()
			st := m.aud.stats()
			if st.Joined == st.Wanted || now.Sub(start) >= cfg.Duration/3 {
				if m.opened != nil {
					m.opened()
				}
				m.self.since(b)
				from, opened = m.snap(), true
				m.self.since(from.mallocs) // the snap's own gather is the bench's
			} else {
				m.self.since(b)
			}
		}
		wait := time.Until(end)
		if wait <= 0 {
			complete = true
			break
		}
		poll.Reset(min(wait, 100*time.Millisecond))
		select {
		case <-ctx.Done():
			break loop
		case <-poll.C:
			continue
		case <-tick.C:
			// One gather a second serves the repair check and the progress
			// line; with no progress line there is no snapshot to take.
			b := mallocs()
			g := gather(m.rt.Metrics.Registry)
			if up, ok := g.gauge("edge", "rtp-reorder", "repair_connected"); ok && up == 0 && m.repairDown != nil {
				*m.repairDown++
			}
			if cfg.Progress != nil {
				cur := m.snapWith(&g)
				progressLine(cfg.Progress, g, cur, prev, start)
				prev = cur
			}
			m.self.since(b)
		}
	}
	if !opened {
		from = snapshot{at: start, cpu: prev.cpu, mallocs: prev.mallocs, self: prev.self}
	}
	return from, m.snap(), complete
}

// startChildFor waits until every publisher is on air (the child derives
// publish times from each one's start) and starts the viewer process.
func startChildFor(ctx context.Context, cfg Config, p ports, pubs []*publisher, spread time.Duration, self *selfCount) (*childAudience, error) {
	deadline := time.Now().Add(15 * time.Second)
	spec := childSpec{Addr: p.HTTP, Viewers: cfg.Viewers, Spread: spread, Idle: cfg.ViewerIdle, CPUs: cfg.ViewerCPUs,
		Input: cfg.Input, Synthetic: cfg.Synthetic, Kbps: cfg.Kbps, Seconds: cfg.ClipSeconds}
	for i, pb := range pubs {
		for pb.started.Load() == 0 {
			if err := pb.lastErr(); err != nil {
				return nil, err
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return nil, fmt.Errorf("publisher %s did not start", pb.key)
			}
			time.Sleep(5 * time.Millisecond)
		}
		spec.Streams = append(spec.Streams, childStream{Path: "/live/" + streamKey(i) + ".flv", Start: pb.started.Load()})
	}
	return startChild(spec, self)
}

func progressLine(w io.Writer, m metricsView, cur, prev snapshot, start time.Time) {
	dt := cur.at.Sub(prev.at).Seconds()
	if dt <= 0 {
		return
	}
	joined, wanted := cur.aud.Active, cur.aud.Wanted
	lat := cur.aud.Lat.hist()
	lost, _ := m.firstOf("mediapipe_stage_drops_total", "edge", "netsim", "reason", lossReasons...)
	rep, repOK := m.counter("edge", "rtp-reorder", "repaired")
	skip, skipOK := m.firstOf("mediapipe_stage_drops_total", "edge", "rtp-reorder", "reason", skipReasons...)
	var out float64 // over the audience's own clock (see Report.fill)
	if adt := time.Duration(cur.aud.At - prev.aud.At).Seconds(); adt > 0 {
		out = float64(cur.aud.Bytes-prev.aud.Bytes) * 8 / adt / 1e6
	}
	fmt.Fprintf(w, "\r%4.0fs  in %6.2f Mbps %6.0f rtp/s  out %8.2f Mbps  viewers %d/%d  lost %.0f repaired %s skipped %s  latency p99 %s   ",
		cur.at.Sub(start).Seconds(),
		float64(cur.pubBytes-prev.pubBytes)*8/dt/1e6, (cur.rtp-prev.rtp)/dt,
		out,
		joined, wanted, lost, orNA(rep, repOK), orNA(skip, skipOK), ms(lat.quantile(0.99)))
}

func orNA(v float64, ok bool) string {
	if !ok {
		return "n/a"
	}
	return fmt.Sprintf("%.0f", v)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/1e6) }

// Metric label values the edge stages use for what the report counts; the
// first present wins, so a renamed counter shows as n/a rather than 0.
var (
	lossReasons = []string{"simulated_loss"}
	skipReasons = []string{"gap_skipped", "skipped", "gap_timeout"}
	shedReasons = []string{"slow_viewer"}
)

// relay is the running cloud + edge runtime.
type relay struct {
	ports ports
	rt    *host.Runtime
	stop  func() error
}

var errOpen = errors.New("relay did not start")

// startRelay builds the relay's pipelines on free ports and runs them.
func startRelay(ctx context.Context, cfg Config, log *slog.Logger) (*relay, error) {
	p, err := freePorts()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errOpen, err)
	}
	rt, stop, err := startText(ctx, relayTOML(p, cfg), log)
	if err != nil {
		return nil, err
	}
	return &relay{ports: p, rt: rt, stop: stop}, nil
}

// startText builds the pipelines of text and runs them until stop.
func startText(ctx context.Context, text string, log *slog.Logger) (*host.Runtime, func() error, error) {
	f, err := host.Load("mediapipe-bench.toml", ".", []byte(text), nil, core.Default)
	if err != nil {
		return nil, nil, fmt.Errorf("building the relay:\n%w\n%s", err, text)
	}
	rt, err := host.Build(f, host.Options{Logger: log})
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	rtCtx, rtCancel := context.WithCancel(context.Background())
	rtDone := make(chan error, 1)
	go func() { rtDone <- rt.Run(rtCtx) }()
	stop := func() error {
		defer f.Close()
		rtCancel()
		select {
		case err := <-rtDone:
			return err
		case <-time.After(15 * time.Second):
			return errors.New("relay did not stop within 15s")
		}
	}
	select {
	case <-rt.Ready():
		return rt, stop, nil
	case err := <-rtDone:
		rtCancel()
		f.Close()
		return nil, nil, fmt.Errorf("%w: %w", errOpen, err)
	case <-ctx.Done():
		_ = stop()
		return nil, nil, ctx.Err()
	case <-time.After(15 * time.Second):
		_ = stop()
		return nil, nil, errors.New("relay did not start within 15s")
	}
}
