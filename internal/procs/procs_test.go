package procs

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"
)

func testGovernor() *Governor {
	return &Governor{Up: defaultUp, Down: defaultDown, DownAfter: defaultDownAfter, Every: time.Millisecond, Log: slog.New(slog.DiscardHandler)}
}

func TestDecide(t *testing.T) {
	g := testGovernor()
	procs, quiet := 2, 0
	// Low load: one P only after DownAfter low samples in a row.
	for i := 1; i < g.DownAfter; i++ {
		if procs, quiet = g.decide(procs, 0.1, quiet); procs != 2 {
			t.Fatalf("sample %d of low load: %d Ps, want 2 until %d in a row", i, procs, g.DownAfter)
		}
	}
	// A busy sample in between starts the count again.
	if procs, quiet = g.decide(procs, 0.5, quiet); procs != 2 || quiet != 0 {
		t.Fatalf("busy sample: %d Ps, quiet %d; want 2, 0", procs, quiet)
	}
	for range g.DownAfter {
		procs, quiet = g.decide(procs, 0.1, quiet)
	}
	if procs != 1 {
		t.Fatalf("after %d low samples: %d Ps, want 1", g.DownAfter, procs)
	}
	// At one P, anything under Up stays; Up or more gives the default back at once.
	if procs, _ = g.decide(1, g.Up-0.01, 0); procs != 1 {
		t.Fatalf("at one P below Up: %d, want 1", procs)
	}
	if procs, _ = g.decide(1, g.Up, 0); procs != 0 {
		t.Fatalf("at one P at Up: %d, want 0 (the runtime's default)", procs)
	}
	// Between Down and Up with two Ps: stays (the hysteresis).
	if procs, _ = g.decide(2, (g.Down+g.Up)/2, 0); procs != 2 {
		t.Fatalf("two Ps between Down and Up: %d, want 2", procs)
	}
}

// fakeProcess is a process whose CPU use the test sets, sample by sample.
type fakeProcess struct {
	mu    sync.Mutex
	cpu   time.Duration
	cores float64 // used per wall second from now on
	last  time.Time
	procs int
	sets  []int
}

func (p *fakeProcess) readCPU() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if !p.last.IsZero() {
		p.cpu += time.Duration(float64(now.Sub(p.last)) * p.cores)
	}
	p.last = now
	return p.cpu
}

func (p *fakeProcess) set(n int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case n == 0:
		p.procs = 2
	case n > 0:
		p.procs = n
	}
	if n >= 0 {
		p.sets = append(p.sets, n)
	}
	return p.procs
}

func (p *fakeProcess) load(cores float64) {
	p.readCPU()
	p.mu.Lock()
	p.cores = cores
	p.mu.Unlock()
}

func (p *fakeProcess) now() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.procs
}

func waitProcs(t *testing.T, p *fakeProcess, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for p.now() != want {
		if time.Now().After(deadline) {
			t.Fatalf("GOMAXPROCS stayed %d, want %d", p.now(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestGovernorFollowsLoad(t *testing.T) {
	p := &fakeProcess{procs: 2}
	g := testGovernor()
	g.cpu, g.setProcs = p.readCPU, p.set
	p.load(0.05)
	stop := g.Start(context.Background())
	waitProcs(t, p, 1) // idle: one P
	p.load(0.9)
	waitProcs(t, p, 2) // busy: the default back
	p.load(0.05)
	waitProcs(t, p, 1)
	stop()
	// Stopping leaves the runtime's default in force.
	if p.now() != 2 {
		t.Fatalf("after stop: %d Ps, want the default (2)", p.now())
	}
}

func TestNewLeavesSetGOMAXPROCS(t *testing.T) {
	t.Setenv("GOMAXPROCS", "2")
	if g := New(nil); g != nil {
		t.Fatal("New governs GOMAXPROCS that the environment set")
	}
	// A nil Governor starts nothing and stops at once.
	var g *Governor
	g.Start(context.Background())()
}
