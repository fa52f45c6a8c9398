package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// audience is the set of viewers: in this process, or in a child process
// (--split) so the relay's CPU figures exclude them.
type audience interface {
	stats() viewerAgg // cumulative so far
	// finish waits up to grace for the viewers to end by themselves (their
	// streams ended), then cuts the rest, and returns the final stats.
	finish(grace time.Duration) viewerAgg
}

// viewerAgg is every viewer's counters added up.
type viewerAgg struct {
	// At is when the counters were read, in nanoseconds on the reporting
	// process's monotonic clock since its audience started. Rates of Tags,
	// Bytes and CPU divide by differences of At, so a report that reaches
	// the parent late (--split) does not stretch or shrink the window.
	At       int64     `json:"at_ns"`
	Wanted   int       `json:"wanted"`
	Joined   int       `json:"joined"`
	Active   int       `json:"active"`
	Tags     uint64    `json:"tags"`
	Bytes    uint64    `json:"bytes"`
	Matched  uint64    `json:"matched"`
	Corrupt  uint64    `json:"corrupt"`
	Unknown  uint64    `json:"unknown"`
	Dup      uint64    `json:"dup"`
	Backlog  uint64    `json:"backlog"`
	Missing  int       `json:"missing"`
	Lat      histSnap  `json:"lat"`
	TTFF     histSnap  `json:"ttff"`
	Ended    []endInfo `json:"ended,omitempty"`
	CPU      int64     `json:"cpu_ns,omitempty"` // the viewer process's CPU time (--split)
	Final    bool      `json:"final,omitempty"`
	ChildErr string    `json:"error,omitempty"`
}

type endInfo struct {
	Reason string `json:"reason"`
	At     int64  `json:"at"` // UnixNano
}

func aggregate(vs []*viewer, origin time.Time) viewerAgg {
	a := viewerAgg{At: int64(time.Since(origin)), Wanted: len(vs)}
	lat, ttff := &histogram{}, &histogram{}
	for _, v := range vs {
		if v.connected.Load() {
			a.Joined++
			if v.ended.Load() == nil {
				a.Active++
			}
		}
		a.Tags += v.tags.Load()
		a.Bytes += v.bytes.Load()
		a.Matched += v.matched.Load()
		a.Corrupt += v.corrupt.Load()
		a.Unknown += v.unknown.Load()
		a.Dup += v.dup.Load()
		a.Backlog += v.backlog.Load()
		a.Missing += v.missing()
		lat.merge(v.lat)
		if t := v.ttff.Load(); t > 0 {
			ttff.add(time.Duration(t))
		}
		if e := v.ended.Load(); e != nil {
			a.Ended = append(a.Ended, endInfo{Reason: *e, At: v.endedAt.Load()})
		}
	}
	a.Lat, a.TTFF = lat.snap(), ttff.snap()
	return a
}

// histSnap is a histogram as JSON: only the non-empty buckets.
type histSnap struct {
	Counts map[string]uint64 `json:"counts,omitempty"`
	N      uint64            `json:"n"`
	Max    int64             `json:"max"`
}

func (h *histogram) snap() histSnap {
	s := histSnap{N: h.n.Load(), Max: h.max.Load()}
	for i := range int(h.hi.Load()) {
		if c := h.counts[i].Load(); c > 0 {
			if s.Counts == nil {
				s.Counts = map[string]uint64{}
			}
			s.Counts[strconv.Itoa(i)] = c
		}
	}
	return s
}

func (s histSnap) hist() *histogram {
	h := &histogram{}
	for k, c := range s.Counts {
		if i, err := strconv.Atoi(k); err == nil && i >= 0 && i < histBuckets {
			h.counts[i].Store(c)
			if int32(i) >= h.hi.Load() {
				h.hi.Store(int32(i) + 1)
			}
		}
	}
	h.n.Store(s.N)
	h.max.Store(s.Max)
	return h
}

// localAudience runs the viewers on goroutines of this process.
type localAudience struct {
	origin  time.Time // At 0 of its reports: no viewer has read anything yet
	viewers []*viewer
	wg      sync.WaitGroup
	cancel  context.CancelFunc
}

func startLocal(vs []*viewer, spread time.Duration) *localAudience {
	ctx, cancel := context.WithCancel(context.Background())
	a := &localAudience{origin: time.Now(), viewers: vs, cancel: cancel}
	for k, v := range vs {
		// Viewers join spread over [0.5 s, 0.5 s + spread): mid-GOP, as
		// real viewers do, so time to first frame exercises the GOP cache.
		delay := 500*time.Millisecond + time.Duration(int64(spread)*int64(k)/int64(max(len(vs), 1)))
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return
			}
			v.run(ctx)
		}()
	}
	return a
}

func (a *localAudience) stats() viewerAgg { return aggregate(a.viewers, a.origin) }

func (a *localAudience) finish(grace time.Duration) viewerAgg {
	done := make(chan struct{})
	go func() { a.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		a.cancel()
		<-done
	}
	a.cancel()
	return aggregate(a.viewers, a.origin)
}

// childSpec is what a viewer child process is told, as JSON in childEnv.
type childSpec struct {
	Addr      string        `json:"addr"`
	Streams   []childStream `json:"streams"`
	Viewers   int           `json:"viewers"` // per stream
	Spread    time.Duration `json:"spread"`
	Idle      time.Duration `json:"idle"`
	CPUs      []int         `json:"cpus,omitempty"`
	Input     string        `json:"input,omitempty"`
	Synthetic bool          `json:"synthetic,omitempty"`
	Kbps      int           `json:"kbps"`
	Seconds   int           `json:"seconds"`
}

type childStream struct {
	Path  string `json:"path"`
	Start int64  `json:"start"` // UnixNano the publisher's timestamp 0 was due
}

// childEnv carries the childSpec; its presence makes `mediapipe bench` (or
// the test binary) run as a viewer child.
const childEnv = "MEDIAPIPE_BENCH_CHILD"

// childAudience runs the viewers in a child process (this executable again)
// that reports its counters as JSON lines on stdout.
type childAudience struct {
	cmd    *exec.Cmd
	stdin  io.Closer
	latest atomic.Pointer[viewerAgg]
	done   chan struct{}
	stderr strings.Builder
}

// startChild starts the viewer process; decoding its reports counts as the
// bench's own allocations in self.
func startChild(spec childSpec, self *selfCount) (*childAudience, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	js, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "bench")
	cmd.Env = append(os.Environ(), childEnv+"="+string(js))
	a := &childAudience{cmd: cmd, done: make(chan struct{})}
	a.latest.Store(&viewerAgg{Wanted: len(spec.Streams) * spec.Viewers})
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = &limitedWriter{b: &a.stderr, max: 4096}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the viewer process: %w", err)
	}
	a.stdin = in
	go func() {
		defer close(a.done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<16), 64<<20)
		for sc.Scan() {
			b := mallocs()
			var agg viewerAgg
			if json.Unmarshal(sc.Bytes(), &agg) == nil {
				a.latest.Store(&agg)
			}
			self.since(b)
		}
		_ = cmd.Wait()
	}()
	return a, nil
}

func (a *childAudience) stats() viewerAgg { return *a.latest.Load() }

func (a *childAudience) finish(grace time.Duration) viewerAgg {
	select {
	case <-a.done:
	case <-time.After(grace):
		_ = a.stdin.Close() // asks the child to cut its viewers and report
		select {
		case <-a.done:
		case <-time.After(30 * time.Second): // thousands of viewers take a while
			_ = a.cmd.Process.Kill()
			<-a.done
		}
	}
	agg := *a.latest.Load()
	if !agg.Final {
		agg.ChildErr = "viewer process ended without its final report: " + strings.TrimSpace(a.stderr.String())
	}
	return agg
}

type limitedWriter struct {
	mu  sync.Mutex
	b   *strings.Builder
	max int
}

func (w *limitedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if room := w.max - w.b.Len(); room > 0 {
		w.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// IsChild reports whether this process was started as a viewer child.
func IsChild() bool { return os.Getenv(childEnv) != "" }

// ChildMain runs the viewers a parent bench asked for and reports on
// stdout; the parent closing stdin stops them. It returns the exit code.
func ChildMain(stdout, stderr io.Writer) int {
	var spec childSpec
	if err := json.Unmarshal([]byte(os.Getenv(childEnv)), &spec); err != nil {
		fmt.Fprintln(stderr, "bench viewer process:", err)
		return 2
	}
	if len(spec.CPUs) > 0 {
		if err := pinProcess(spec.CPUs); err != nil {
			fmt.Fprintln(stderr, "bench viewer process:", err)
			return 1
		}
	}
	cl, err := pickClip(Config{Input: spec.Input, Synthetic: spec.Synthetic, Kbps: spec.Kbps, ClipSeconds: spec.Seconds}, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "bench viewer process:", err)
		return 1
	}
	var vs []*viewer
	for _, st := range spec.Streams {
		b := newClipBook(cl, st.Start)
		for range spec.Viewers {
			vs = append(vs, &viewer{addr: spec.Addr, path: st.Path, ledger: b, idle: spec.Idle, lat: &histogram{}})
		}
	}
	a := startLocal(vs, spec.Spread)
	stop := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(stop) }()
	all := make(chan struct{})
	go func() { a.wg.Wait(); close(all) }()
	enc := json.NewEncoder(stdout)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			st := a.stats()
			st.CPU = int64(cpuTime())
			_ = enc.Encode(st)
			continue
		case <-stop:
			a.cancel()
		case <-all:
		}
		break
	}
	agg := a.finish(0)
	agg.Final = true
	agg.CPU = int64(cpuTime())
	if err := enc.Encode(agg); err != nil {
		return 1
	}
	return 0
}

// clipBook is the ledger a viewer child rebuilds from the same clip: the
// publisher sends tag i of lap L at start + its timestamp, so both the bytes
// and (to within the publisher's timer slack) the write time are known.
type clipBook struct {
	clip   *clip
	start  int64
	idx    map[uint64]int
	hashes []uint64
}

func newClipBook(c *clip, start int64) *clipBook {
	b := &clipBook{clip: c, start: start, idx: make(map[uint64]int, len(c.Media)), hashes: make([]uint64, len(c.Media))}
	for i, t := range c.Media {
		b.idx[tagKey(t.Type, t.TS)] = i
		b.hashes[i] = hashBody(t.Body)
	}
	return b
}

func (b *clipBook) lookup(typ uint8, ts uint32) (rec, int, bool) {
	lap := ts / b.clip.Period
	i, ok := b.idx[tagKey(typ, ts-lap*b.clip.Period)]
	if !ok {
		return rec{}, 0, false
	}
	return rec{at: b.start + int64(ts)*int64(time.Millisecond), hash: b.hashes[i], size: len(b.clip.Media[i].Body)},
		int(lap)*len(b.clip.Media) + i, true
}

// pinProcess binds every thread of this process to cpus; threads the Go
// runtime starts later inherit it from the thread that clones them.
func pinProcess(cpus []int) error {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	for range 3 { // threads may appear while we go: repeat
		ents, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return fmt.Errorf("pinning to CPUs %v: %w", cpus, err)
		}
		for _, e := range ents {
			tid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("pinning to CPUs %v: %w", cpus, err)
			}
		}
	}
	return nil
}

// parseCPUs reads "0", "0,1", "2-3".
func parseCPUs(s string) ([]int, error) {
	var out []int
	if s == "" {
		return nil, nil
	}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("bad CPU list %q", s)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("bad CPU list %q", s)
			}
		}
		for c := a; c <= b; c++ {
			out = append(out, c)
		}
	}
	sort.Ints(out)
	return out, nil
}
