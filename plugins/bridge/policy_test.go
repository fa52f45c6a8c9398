package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/control"
	"github.com/mediapipe/mediapipe/internal/testrun"
	"github.com/mediapipe/mediapipe/plugins/examples/policy-worst-loss/worstloss"
)

// policyInput is a tick with two streams, three edges and a repair budget;
// the first stream's name is badpolicy's mode.
func policyInput(mode string) *control.Input {
	rep := func(edge int, ssrc uint32, loss float64) control.EdgeReport {
		return control.EdgeReport{Edge: edge, EdgeStream: core.EdgeStream{
			Stream: "live/x", SSRC: ssrc, At: time.Unix(1_700_000_000, 0).UTC(), FractionLost: loss, RTTSeconds: 0.02,
		}, RepairBytesPerSecond: 1000}
	}
	return &control.Input{
		IntervalSeconds: 1,
		Streams: []control.Stream{
			{Stream: mode, SSRC: 0x1234, MediaBytesPerSecond: 500_000, PacketsPerSecond: 400, MeanPacketBytes: 1250,
				KeyframeBurstBytes: 60_000, Group: 20, MaxWaitSeconds: 0.02, LatencyBudgetSeconds: 0.15,
				Edges:   []control.EdgeReport{rep(1, 0x1234, 0.01), rep(2, 0x1234, 0.08), rep(3, 0x1234, 0)},
				Current: control.StreamDecision{Overhead: 0.1, PaceBytesPerSecond: 2e6}},
			{Stream: "live/y", SSRC: 0x5678, Edges: []control.EdgeReport{rep(1, 0x5678, 0), rep(2, 0x5678, 0)}},
		},
		RepairBudget: 1_000_000,
		Edges:        []int{1, 2, 3},
	}
}

func openPolicy(t *testing.T, name string) *Policy {
	t.Helper()
	p, err := control.OpenPlugin(bin(t, name)) // through the opener the bridge installs
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p.(*Policy)
}

// decide calls Decide with a deadline and fails t when it is not kept.
func decide(t *testing.T, p *Policy, in *control.Input, deadline time.Duration) (control.Decision, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	type result struct {
		d   control.Decision
		err error
	}
	ch := make(chan result, 1)
	go func() {
		d, err := p.Decide(ctx, in)
		ch <- result{d, err}
	}()
	r := testrun.Within(t, ch, deadline+time.Second, "Decide to return")
	return r.d, r.err
}

// TestPolicyPluginExample: the example plugin, built and run through the
// bridge, answers the decision its policy makes in process (the input
// round-trips as JSON intact), and Close leaves no process behind.
func TestPolicyPluginExample(t *testing.T) {
	bin(t, "policy-worst-loss") // built before counting goroutines
	goroutines := runtime.NumGoroutine()
	p := openPolicy(t, "policy-worst-loss")
	if p.Name() != "policy-worst-loss" {
		t.Errorf("name = %q", p.Name())
	}
	in := policyInput("live/x")
	got, err := decide(t, p, in, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := worstloss.Default.Decide(context.Background(), in)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decision = %+v, want %+v", got, want)
	}
	// The figures a user relies on: twice the worst edge's 8 %, the pacing
	// kept, no parity for the clean stream, a third of the budget each.
	if s := got.Streams[0x1234]; s.Overhead < 0.16-1e-9 || s.Overhead > 0.16+1e-9 || s.PaceBytesPerSecond != 2e6 {
		t.Errorf("stream 0x1234: %+v", s)
	}
	if s, ok := got.Streams[0x5678]; !ok || s.Overhead != 0 {
		t.Errorf("stream 0x5678: %+v, %v", s, ok)
	}
	if len(got.RepairShares) != 3 || got.RepairShares[3] != 1.0/3 || !strings.Contains(got.Reason, "edge 2") {
		t.Errorf("shares %v, reason %q", got.RepairShares, got.Reason)
	}
	pid := p.PID()
	if !alive(pid) {
		t.Fatal("no process")
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid)
	if _, err := p.Decide(context.Background(), in); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Decide after Close: %v", err)
	}
	noneLive(t, "Close")
	// The gRPC connection's and go-plugin's goroutines end with the process.
	testrun.Eventually(t, 5*time.Second, "the plugin's goroutines to end", func() bool {
		return runtime.NumGoroutine() <= goroutines
	})
}

// TestPolicyPluginBadAnswers: each answer the controller could not apply is
// refused with an error saying what is wrong, within the deadline, and the
// plugin goes on answering.
func TestPolicyPluginBadAnswers(t *testing.T) {
	p := openPolicy(t, "badpolicy")
	pid := p.PID()
	for _, c := range []struct{ mode, want string }{
		{"garbage", "JSON"},
		{"not-object", "not a JSON object"},
		{"empty", "not a JSON object"},
		{"unknown-field", `unknown field "overhed"`},
		{"trailing", "data after the decision"},
		{"trailing-brace", "data after the decision"},
		{"trailing-bracket", "data after the decision"},
		{"huge", "refused unread"},
		{"nan", "JSON"},
		{"negative", "overhead -0.1 is outside 0 … 1"},
		{"over-one", "overhead 1.5 is outside 0 … 1"},
		{"pace-negative", "pace_bytes_per_second -5"},
		{"unknown-ssrc", "stream 999999: no such SSRC"},
		{"unknown-edge", "edge 77: no such edge"},
		{"share-range", "1.2 is outside 0 … 1"},
		{"shares-sum", "sum to 1.2"},
		{"error", "model not loaded"},
	} {
		_, err := decide(t, p, policyInput(c.mode), 2*time.Second)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "badpolicy") ||
			strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error = %v, want one line naming the plugin and saying %q", c.mode, err, c.want)
		}
	}
	// A plugin's error text spanning lines: its first line, bounded.
	_, err := decide(t, p, policyInput("multiline-error"), 2*time.Second)
	if err == nil || strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "goroutine") ||
		!strings.Contains(err.Error(), "model not loaded: xxx") || len(err.Error()) > 400 {
		t.Errorf("multi-line error = %q, want its first line, at most 256 bytes of it", err)
	}
	d, err := decide(t, p, policyInput("ok"), 2*time.Second)
	if err != nil || d.Streams[0x1234].Overhead != 0.25 || d.RepairShares[1] != 0.5 || d.Reason != "fine" {
		t.Fatalf("after the bad answers: %+v, %v", d, err)
	}
	if p.PID() != pid {
		t.Errorf("bad answers restarted the plugin (pid %d → %d)", pid, p.PID())
	}
}

// TestPolicyPluginHang: a plugin that never answers costs the caller its
// deadline, no more; without a deadline, DecideTimeout. It still answers
// the next call.
func TestPolicyPluginHang(t *testing.T) {
	p := openPolicy(t, "badpolicy")
	start := time.Now()
	_, err := decide(t, p, policyInput("hang"), 200*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no decision within its deadline") {
		t.Fatalf("error = %v", err)
	}
	if el := time.Since(start); el > 700*time.Millisecond {
		t.Errorf("Decide took %v with a 200 ms deadline", el)
	}

	old := DecideTimeout
	DecideTimeout = 300 * time.Millisecond
	defer func() { DecideTimeout = old }()
	done := make(chan error, 1)
	go func() {
		_, err := p.Decide(context.Background(), policyInput("hang"))
		done <- err
	}()
	if err := testrun.Within(t, done, 2*time.Second, "Decide without a deadline to give up"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error = %v", err)
	}
	if _, err := decide(t, p, policyInput("ok"), 2*time.Second); err != nil {
		t.Fatalf("after the hangs: %v", err)
	}
}

// TestPolicyPluginCrash: a plugin that dies answers with an error; the
// calls that follow within the back-off fail at once, then a new process
// answers. Close ends it.
func TestPolicyPluginCrash(t *testing.T) {
	p := openPolicy(t, "badpolicy")
	clock := stopClock(p)
	first := p.PID()
	_, err := decide(t, p, policyInput("crash"), 2*time.Second)
	if err == nil || !strings.Contains(err.Error(), "badpolicy") || !strings.Contains(err.Error(), "the process is gone") {
		t.Fatalf("error = %v", err)
	}
	waitGone(t, first)
	// Within the back-off (the clock stands still): refused at once, however
	// long the caller would wait.
	began := time.Now()
	_, err = decide(t, p, policyInput("ok"), 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "down, next start in 50ms") {
		t.Fatalf("during the back-off: %v", err)
	}
	if el := time.Since(began); el > 500*time.Millisecond {
		t.Errorf("a call during the back-off took %v", el)
	}
	clock.advance(minBackoff)
	testrun.Eventually(t, 10*time.Second, "a restarted plugin to answer", func() bool {
		_, err := decide(t, p, policyInput("ok"), 2*time.Second)
		return err == nil
	})
	second := p.PID()
	if second == first || !alive(second) {
		t.Fatalf("pid %d → %d", first, second)
	}
	// Killed from outside: the same.
	if err := syscall.Kill(second, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	clock.advance(maxBackoff) // past the back-off, now doubled
	testrun.Eventually(t, 10*time.Second, "a plugin killed from outside to be replaced", func() bool {
		_, err := decide(t, p, policyInput("ok"), 2*time.Second)
		return err == nil && p.PID() != second
	})
	third := p.PID()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	waitGone(t, third)
	noneLive(t, "Close after crashes")
}

// TestPolicyPluginOpenErrors: what is no policy plugin fails to open with
// one line naming the path and saying why; a policy plugin is no stage or
// SR backend either.
func TestPolicyPluginOpenErrors(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "nope"), "no such file"},
		{"not executable", plain, "not executable"},
		{"/bin/true", "/bin/true", "not a mediapipe plugin"},
		{"stage", bin(t, "stream-filter"), "is a stage plugin, not a policy"},
		{"sr backend", bin(t, "sr-sharpen"), "is an SR backend plugin, not a policy"},
	} {
		_, err := control.OpenPlugin(c.path)
		if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), c.path) ||
			!strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error = %v, want one line naming %s and saying %q", c.name, err, c.path, c.want)
		}
	}
	if _, err := Load(bin(t, "policy-worst-loss")); err == nil || !strings.Contains(err.Error(), "is a policy plugin, not a stage") {
		t.Errorf("policy as stage: %v", err)
	}
	if _, err := OpenSRBackend(bin(t, "policy-worst-loss")); err == nil ||
		!strings.Contains(err.Error(), "is a policy plugin, not an SR backend") {
		t.Errorf("policy as SR backend: %v", err)
	}
	noneLive(t, "failed opens")
}

// testClock is a respawner's clock that moves only when told.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// stopClock makes p's back-off run on a clock that moves only when told,
// starting at p's last start.
func stopClock(p *Policy) *testClock {
	c := &testClock{t: time.Unix(1_700_000_000, 0)}
	p.mu.Lock()
	p.now, p.started = c.now, c.t
	p.mu.Unlock()
	return c
}

// waitBackground waits for p's background starts and kills to end.
func waitBackground(t *testing.T, p *Policy) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		p.bg.Wait()
		close(done)
	}()
	testrun.Within(t, done, 20*time.Second, "background starts and kills to end")
}

// TestPolicyPluginSlowRestart: while a dead plugin's new process is slow to
// start, Decide still returns within its deadline, other calls fail at once
// saying it is restarting, PID, SetLogger and Close do not wait for it, and
// the process that comes up after Close is killed.
func TestPolicyPluginSlowRestart(t *testing.T) {
	dir := t.TempDir()
	slowMark := filepath.Join(dir, "slow")
	wrapper := filepath.Join(dir, "badpolicy")
	script := "#!/bin/sh\nif [ -e " + slowMark + " ]; then sleep 2; fi\nexec " + bin(t, "badpolicy") + "\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cp, err := control.OpenPlugin(wrapper)
	if err != nil {
		t.Fatal(err)
	}
	p := cp.(*Policy)
	defer p.Close()
	clock := stopClock(p)
	first := p.PID()
	if _, err := decide(t, p, policyInput("crash"), 2*time.Second); err == nil {
		t.Fatal("crash answered")
	}
	waitGone(t, first)
	if err := os.WriteFile(slowMark, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	clock.advance(minBackoff)

	began := time.Now()
	_, err = decide(t, p, policyInput("ok"), 300*time.Millisecond)
	if el := time.Since(began); el > 800*time.Millisecond {
		t.Errorf("Decide took %v with a 300 ms deadline while the plugin restarts", el)
	}
	if err == nil || !strings.Contains(err.Error(), "restarting") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Decide while the plugin restarts: %v", err)
	}
	began = time.Now()
	_, err = decide(t, p, policyInput("ok"), 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "badpolicy: restarting") {
		t.Fatalf("second Decide while the plugin restarts: %v", err)
	}
	if p.PID() != 0 {
		t.Errorf("PID = %d while none runs", p.PID())
	}
	p.SetLogger(slog.Default())
	if el := time.Since(began); el > 500*time.Millisecond {
		t.Errorf("Decide, PID and SetLogger took %v while the plugin restarts", el)
	}
	began = time.Now()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(began); el > 500*time.Millisecond {
		t.Errorf("Close took %v while the plugin restarts", el)
	}
	// The start finishes after Close; what it started is killed.
	waitBackground(t, p)
	noneLive(t, "Close during a restart")
	if _, err := p.Decide(context.Background(), policyInput("ok")); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Decide after Close: %v", err)
	}
}

// TestPolicyPluginHungKilled: a plugin alive but never answering is killed
// after maxTimeouts calls in a row run out of their deadline (and the log
// says so); the next call goes through the back-off and a new process
// answers.
func TestPolicyPluginHungKilled(t *testing.T) {
	p := openPolicy(t, "badpolicy")
	sink := &logSink{}
	p.SetLogger(slog.New(sink))
	first := p.PID()
	for i := range maxTimeouts {
		if _, err := decide(t, p, policyInput("hang"), 150*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("hang %d: %v", i, err)
		}
		if i < maxTimeouts-1 && p.PID() != first {
			t.Fatalf("killed after %d timeouts", i+1)
		}
	}
	waitGone(t, first)
	hung := false
	for _, r := range sink.all() {
		hung = hung || strings.Contains(r, "policy plugin hung") && strings.Contains(r, "killed")
	}
	if !hung {
		t.Errorf("no log of the kill: %q", sink.all())
	}
	testrun.Eventually(t, 10*time.Second, "a new process to answer", func() bool {
		_, err := decide(t, p, policyInput("ok"), 2*time.Second)
		return err == nil
	})
	if pid := p.PID(); pid == first || !alive(pid) {
		t.Fatalf("pid %d → %d", first, pid)
	}
	// An answer, even a refusal, resets the count.
	for range maxTimeouts - 1 {
		_, _ = decide(t, p, policyInput("hang"), 150*time.Millisecond)
	}
	second := p.PID()
	_, _ = decide(t, p, policyInput("error"), time.Second)
	_, _ = decide(t, p, policyInput("hang"), 150*time.Millisecond)
	if p.PID() != second {
		t.Errorf("killed although an answer came between the timeouts")
	}
}

// TestPolicyUnavailableWording: an Unavailable status from a process that
// is still running is not reported as the process being gone.
func TestPolicyUnavailableWording(t *testing.T) {
	p := openPolicy(t, "badpolicy")
	p.mu.Lock()
	proc := p.proc
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := p.callError(ctx, proc, status.Error(codes.Unavailable, "connection reset"), time.Second)
	if strings.Contains(err.Error(), "gone") || !strings.Contains(err.Error(), "unavailable (connection reset)") {
		t.Errorf("error = %v", err)
	}
}

// TestDecodeDecisionTrailing: anything after the decision object is
// refused, a stray closing brace or bracket too; white space is not.
func TestDecodeDecisionTrailing(t *testing.T) {
	for _, bad := range []string{`{"streams":{}}}`, `{"streams":{}}]`, `{} {}`, `{}x`, `{},`, `{} 1`} {
		if _, err := decodeDecision([]byte(bad)); err == nil || !strings.Contains(err.Error(), "data after the decision") {
			t.Errorf("%s: %v", bad, err)
		}
	}
	for _, good := range []string{`{}`, " {\"reason\":\"x\"} \n\t"} {
		if _, err := decodeDecision([]byte(good)); err != nil {
			t.Errorf("%q: %v", good, err)
		}
	}
}

// TestCheckDecisionNonFinite: figures JSON cannot carry, should a decision
// hold them, are refused like any out-of-range one.
func TestCheckDecisionNonFinite(t *testing.T) {
	in := policyInput("ok")
	for _, c := range []struct {
		name string
		d    control.Decision
		want string
	}{
		{"overhead NaN", control.Decision{Streams: map[uint32]control.StreamDecision{0x1234: {Overhead: math.NaN()}}}, "outside 0 … 1"},
		{"overhead +Inf", control.Decision{Streams: map[uint32]control.StreamDecision{0x1234: {Overhead: math.Inf(1)}}}, "outside 0 … 1"},
		{"pace NaN", control.Decision{Streams: map[uint32]control.StreamDecision{0x1234: {PaceBytesPerSecond: math.NaN()}}}, "is not a rate"},
		{"pace +Inf", control.Decision{Streams: map[uint32]control.StreamDecision{0x1234: {PaceBytesPerSecond: math.Inf(1)}}}, "is not a rate"},
		{"pace -Inf", control.Decision{Streams: map[uint32]control.StreamDecision{0x1234: {PaceBytesPerSecond: math.Inf(-1)}}}, "is not a rate"},
		{"share NaN", control.Decision{RepairShares: map[int]float64{1: math.NaN()}}, "outside 0 … 1"},
		{"share +Inf", control.Decision{RepairShares: map[int]float64{1: math.Inf(1)}}, "outside 0 … 1"},
	} {
		if err := checkDecision(in, &c.d); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	ok := control.Decision{Streams: map[uint32]control.StreamDecision{0x1234: {Overhead: 1, PaceBytesPerSecond: 0}}, RepairShares: map[int]float64{1: 1}}
	if err := checkDecision(in, &ok); err != nil {
		t.Errorf("bounds: %v", err)
	}
}

// TestPolicyNonFiniteInput: NaN and Inf in the input (json.Marshal refuses
// them) reach the plugin as 0 instead of failing the call, and the caller's
// input is left as it was.
func TestPolicyNonFiniteInput(t *testing.T) {
	in := policyInput("ok")
	in.Streams[0].MediaBytesPerSecond = math.NaN()
	in.Streams[0].Edges[1].FractionLost = math.Inf(1)
	in.IntervalSeconds = math.Inf(-1)
	got := finiteCopy(reflect.ValueOf(in)).Interface().(*control.Input)
	body, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	var back control.Input
	if err := json.Unmarshal(body, &back); err != nil {
		t.Fatal(err)
	}
	if s := back.Streams[0]; s.MediaBytesPerSecond != 0 || s.Edges[1].FractionLost != 0 || back.IntervalSeconds != 0 || back.RepairBudget != 1_000_000 ||
		s.PacketsPerSecond != 400 || s.Edges[0].FractionLost != 0.01 ||
		!s.Edges[0].At.Equal(in.Streams[0].Edges[0].At) || s.Current.PaceBytesPerSecond != 2e6 || len(back.Edges) != 3 {
		t.Errorf("sent %s", body)
	}
	if !math.IsNaN(in.Streams[0].MediaBytesPerSecond) || !math.IsInf(in.Streams[0].Edges[1].FractionLost, 1) {
		t.Error("the caller's input was changed")
	}

	p := openPolicy(t, "badpolicy")
	sink := &logSink{}
	p.SetLogger(slog.New(sink))
	for range 2 {
		if d, err := decide(t, p, in, 2*time.Second); err != nil || d.Reason != "fine" {
			t.Fatalf("Decide with NaN and Inf in the input: %+v, %v", d, err)
		}
	}
	if n := strings.Count(strings.Join(sink.all(), "\n"), "NaN or Inf"); n != 1 {
		t.Errorf("%d warnings about the input, want 1: %q", n, sink.all())
	}
}
