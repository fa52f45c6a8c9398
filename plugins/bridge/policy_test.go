package bridge

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

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
	first := p.PID()
	_, err := decide(t, p, policyInput("crash"), 2*time.Second)
	if err == nil || !strings.Contains(err.Error(), "badpolicy") || !strings.Contains(err.Error(), "the process is gone") {
		t.Fatalf("error = %v", err)
	}
	waitGone(t, first)
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
