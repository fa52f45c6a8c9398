// Package procs fits the Go runtime's parallelism (GOMAXPROCS) to the load.
//
// A live relay at low load is a stream of small bursts: a frame arrives,
// goes through the stages and out to the viewers in well under a
// millisecond, and the process sleeps until the next. With more than one P
// the runtime hands each goroutine a stage readies to an idle thread, so a
// burst wakes two or three threads and each wake-up is a context switch —
// on a virtual machine, dearer than the burst's own work. With one P the
// whole burst runs on the thread that woke for it. Measured on the 2-core
// VM of docs/performance.md ("What each lever gained"): one P cuts what a
// 1-viewer relay costs by about a third. But one P caps the process at one core,
// so the Governor gives the runtime its default back as soon as the
// process uses a good part of that core, and takes it away again only
// after the load has stayed low for a while.
package procs

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/mediapipe/mediapipe/core"
)

// Governor samples the process's CPU use and sets GOMAXPROCS to 1 when it
// is low, to the runtime's default when it is not.
type Governor struct {
	// Up: at one P, a sample at or above this many cores gives the runtime
	// its default back at once.
	Up float64
	// Down: with more than one P, DownAfter samples in a row below this
	// many cores set one P. Work costs more with more Ps (the wake-ups
	// this package is about), so Down leaves a margin under Up.
	Down      float64
	DownAfter int
	// Every is the sampling period.
	Every time.Duration
	Log   *slog.Logger

	// cpu returns the process's CPU time so far; setProcs sets GOMAXPROCS
	// (n 0: the runtime's default) and returns the setting now in force.
	cpu      func() time.Duration
	setProcs func(n int) int
}

// Defaults for New: a quarter-second burst of work at one P is noticed
// within Every; a process must stay under Down for two seconds to lose
// its second core.
const (
	defaultUp        = 0.6
	defaultDown      = 0.35
	defaultDownAfter = 4
	defaultEvery     = 500 * time.Millisecond
)

// New returns a Governor with the defaults, nil when GOMAXPROCS is the
// user's to set: the GOMAXPROCS environment variable is set, or the
// runtime's default is already one P.
func New(log *slog.Logger) *Governor {
	if log == nil {
		log = slog.Default()
	}
	if v := os.Getenv("GOMAXPROCS"); v != "" {
		log.Debug("GOMAXPROCS is set: the runtime's parallelism is left as set", "GOMAXPROCS", v)
		return nil
	}
	if runtime.GOMAXPROCS(0) <= 1 || processCPU() < 0 {
		return nil
	}
	return &Governor{Up: defaultUp, Down: defaultDown, DownAfter: defaultDownAfter, Every: defaultEvery, Log: log,
		cpu: processCPU, setProcs: setProcs}
}

// Start runs g until ctx ends or the returned func is called (which waits
// for it and leaves the runtime's default in force). A nil g starts
// nothing.
func (g *Governor) Start(ctx context.Context) (stop func()) {
	if g == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { g.run(ctx) })
	return func() {
		cancel()
		wg.Wait()
	}
}

func (g *Governor) run(ctx context.Context) {
	// On the process's ticks of Every, as the stages' periodic work is
	// (core.UntilAligned): the samples cost no wake-ups of their own.
	first := core.UntilAligned(time.Now(), g.Every)
	if first < g.Every/2 { // a first sample of a few ms would be all noise
		first += g.Every
	}
	t := time.NewTimer(first)
	defer t.Stop()
	procs := g.setProcs(-1)
	defer func() {
		if procs == 1 {
			g.setProcs(0)
		}
	}()
	lastCPU, lastAt := g.cpu(), time.Now()
	quiet := 0
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			t.Reset(core.UntilAligned(time.Now(), g.Every))
			cpu := g.cpu()
			wall := now.Sub(lastAt)
			if wall <= 0 {
				continue
			}
			cores := float64(cpu-lastCPU) / float64(wall)
			lastCPU, lastAt = cpu, now
			var want int
			want, quiet = g.decide(procs, cores, quiet)
			if want == procs {
				continue
			}
			before := procs
			if want == 1 {
				procs = g.setProcs(1)
			} else {
				procs = g.setProcs(0)
			}
			if procs == before { // the default is one P now (CPU affinity, cgroup limit)
				continue
			}
			g.Log.Info("GOMAXPROCS adapted to the load", "from", before, "to", procs, "cores_used", round2(cores))
		}
	}
}

// decide returns the Ps wanted after a sample of cores used at procs Ps,
// and the count of low samples in a row so far. Any want other than 1
// means the runtime's default.
func (g *Governor) decide(procs int, cores float64, quiet int) (want, quietAfter int) {
	if procs == 1 {
		if cores >= g.Up {
			return 0, 0
		}
		return 1, 0
	}
	if cores >= g.Down {
		return procs, 0
	}
	quiet++
	if quiet >= g.DownAfter {
		return 1, 0
	}
	return procs, quiet
}

func round2(f float64) float64 { return float64(int(f*100+0.5)) / 100 }

// setProcs sets GOMAXPROCS: n 1 one P, n 0 the runtime's default (which
// follows the CPU limit of the process's cgroup again), n < 0 nothing. It
// returns the setting in force after.
func setProcs(n int) int {
	switch {
	case n == 0:
		runtime.SetDefaultGOMAXPROCS()
	case n > 0:
		runtime.GOMAXPROCS(n)
	}
	return runtime.GOMAXPROCS(0)
}
