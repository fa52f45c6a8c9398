// Package host loads pipeline files, builds and runs their stages with queues
// between them, serves the admin endpoints and renders the stage reference.
package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mediapipe/mediapipe/core"
)

// Options configure Build.
type Options struct {
	Logger  *slog.Logger
	Metrics *core.Metrics // nil: a fresh registry
	Clock   core.Clock    // nil: the wall clock
	// DrainTimeout bounds how long shutdown waits for stages to finish
	// after the sources stopped (default 5 s).
	DrainTimeout time.Duration
}

// Runtime is a built set of pipelines, ready to run once.
type Runtime struct {
	File      *File
	Pipelines []*Pipeline
	Metrics   *core.Metrics
	log       *slog.Logger
	drain     time.Duration
	ready     chan struct{}
	// AdminAddr is where the admin server listens once Run has started it.
	AdminAddr net.Addr
}

// Pipeline is one running pipeline: its stages and the streams live in it.
type Pipeline struct {
	Name   string
	From   string // the stage id this branch receives from; "" when it has a source
	Stages []*RunningStage

	mu      sync.Mutex
	streams map[*core.Stream]struct{}
}

// RunningStage is one built stage with its place and queues.
type RunningStage struct {
	Config *StageConfig
	Env    *core.Env
	Stage  core.Stage
	in     chan *core.Packet
	out    *chanOutput // nil for sinks
	tee    *teeOutput  // set when pipelines branch off this stage's id
	done   atomic.Bool
}

// Build constructs every stage of f. Nothing listens or runs yet.
func Build(f *File, opts Options) (*Runtime, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Metrics == nil {
		opts.Metrics = core.NewMetrics()
	}
	if opts.Clock == nil {
		opts.Clock = core.RealClock{}
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = 5 * time.Second
	}
	rt := &Runtime{File: f, Metrics: opts.Metrics, log: opts.Logger, drain: opts.DrainTimeout, ready: make(chan struct{})}
	var errs []error
	for _, pc := range f.Pipelines {
		p := &Pipeline{Name: pc.Name, From: pc.From, streams: map[*core.Stream]struct{}{}}
		for _, sc := range pc.Stages {
			log := opts.Logger.With("pipeline", pc.Name, "stage", sc.Index, "name", sc.SpecName())
			sm := opts.Metrics.Stage(pc.Name, sc.Index, sc.SpecName())
			sm.SetLogger(log)
			env := &core.Env{Pipeline: pc.Name, Index: sc.Index, Name: sc.SpecName(), Dir: f.Dir, Log: log, Metrics: sm, Clock: opts.Clock}
			st, err := sc.Def.Build(sc.Params, env)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: pipeline %q stage %d (%s): %w", f.Path, pc.Name, sc.Index, sc.Label(), err))
				continue
			}
			rs := &RunningStage{Config: sc, Env: env, Stage: st}
			if !sc.Def.Spec.IsSource() {
				rs.in = make(chan *core.Packet, pc.Queue)
			}
			p.Stages = append(p.Stages, rs)
		}
		// Wire each stage's output to the next stage's queue.
		for i, rs := range p.Stages {
			if i+1 < len(p.Stages) {
				next := p.Stages[i+1]
				rs.out = &chanOutput{
					ch:   next.in,
					out:  rs.Env.Metrics.Out,
					in:   next.Env.Metrics.In,
					full: next.Env.Metrics.Drop("queue_full"),
					gone: next.Env.Metrics.Drop("stage_stopped"),
					wait: QueueWait,
				}
				if i == 0 {
					rs.out.track = p
					rs.out.log = rs.Env.Log
				}
			}
		}
		rt.Pipelines = append(rt.Pipelines, p)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if err := rt.branch(); err != nil {
		return nil, err
	}
	return rt, nil
}

// branch wires each pipeline with from to the stage whose id it names,
// turning that stage's output into a tee.
func (rt *Runtime) branch() error {
	byConfig := map[*StageConfig]*RunningStage{}
	pipeOf := map[*StageConfig]*Pipeline{}
	for i, p := range rt.Pipelines {
		for _, rs := range p.Stages {
			byConfig[rs.Config] = rs
			pipeOf[rs.Config] = rt.Pipelines[i]
		}
	}
	for i, pc := range rt.File.Pipelines {
		if pc.From == "" {
			continue
		}
		_, sc := rt.File.Tapped(pc)
		tapped := byConfig[sc]
		p := rt.Pipelines[i]
		if tapped == nil || tapped.out == nil || len(p.Stages) == 0 || p.Stages[0].in == nil {
			// Resolve refuses such a file; Build is also called on files
			// assembled by hand.
			return fmt.Errorf("%s: pipeline %q: from %q names no stage with an output that its first stage can take", rt.File.Path, pc.Name, pc.From)
		}
		if tapped.tee == nil {
			tapped.tee = &teeOutput{main: tapped.out}
		}
		b := newBranchOutput(p, p.Stages[0], mutatesAfter(p, nil))
		tapped.tee.branches = append(tapped.tee.branches, b)
		// The branches that only read share one copy when the tapped
		// stage's own pipeline writes into the original.
		tapped.tee.copyShared = tapped.tee.copyShared || !b.mutates && mutatesAfter(pipeOf[sc], tapped)
	}
	return nil
}

// mutatesAfter says whether a stage of p after rs (every stage when rs is
// nil) writes into the bytes of the packets it receives.
func mutatesAfter(p *Pipeline, rs *RunningStage) bool {
	after := rs == nil
	for _, s := range p.Stages {
		if after && s.Config.Def.Spec.Mutates {
			return true
		}
		after = after || s == rs
	}
	return false
}

// Run opens every stage, runs them until ctx is cancelled or a stage fails,
// then stops the sources, lets the rest drain and returns. It returns nil
// after a clean shutdown.
func (rt *Runtime) Run(ctx context.Context) error {
	// Last of all: write the held-back drop summaries, stop their timer.
	defer rt.Metrics.Close()
	stageCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hard := make(chan struct{})
	var all []*RunningStage
	var pumps sync.WaitGroup
	for _, p := range rt.Pipelines {
		for _, rs := range p.Stages {
			if rs.out != nil {
				rs.out.hard = hard
			}
			if rs.tee != nil {
				for _, b := range rs.tee.branches {
					b.hard = hard
					pumps.Go(b.pump)
				}
			}
			all = append(all, rs)
		}
	}
	// Every pump returns once its tee is closed: after its stage's Run,
	// or below for the stages a failed open left unrun.

	// Open in order; on failure, let the already opened stages clean up.
	opened, err := openStages(stageCtx, all)
	var a *admin
	if err == nil && rt.File.Admin != nil {
		a, err = rt.startAdmin(rt.File.Admin.Listen)
	}
	if err != nil {
		cancel()
		close(hard)
		// With ctx cancelled the sources return at once and each closed
		// output ends the next stage, so the opened stages release what
		// Open bound.
		// A branch opened before the pipeline it taps ends when that
		// stage's output closes, which an unopened stage's must do here.
		for _, rs := range all[opened:] {
			rs.closeOutput()
		}
		rt.runStages(stageCtx, all[:opened], nil)
		pumps.Wait()
		return err
	}
	if a != nil {
		defer a.close()
	}

	failed := make(chan error, len(all))
	done := make(chan struct{})
	go func() {
		defer close(done)
		rt.runStages(stageCtx, all, failed)
		pumps.Wait()
	}()

	close(rt.ready)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-failed:
	case <-done:
	}
	rt.log.Info("stopping")
	cancel()
	if err := rt.awaitStop(done, hard, all); err != nil {
		return errors.Join(runErr, err)
	}
	return runErr
}

// openStages opens every stage that is an Opener, in order, and returns how
// many it got through and the error that stopped it.
func openStages(ctx context.Context, all []*RunningStage) (int, error) {
	for i, rs := range all {
		if o, ok := rs.Stage.(core.Opener); ok {
			if err := o.Open(ctx); err != nil {
				return i, fmt.Errorf("pipeline %q stage %d (%s): %w", rs.Env.Pipeline, rs.Env.Index, rs.Env.Name, err)
			}
		}
	}
	return len(all), nil
}

// awaitStop waits, once the sources were told to stop, until done: up to
// the drain timeout, then 2 s more with start and end events no longer
// waiting on a stuck queue (hard closed). It always leaves hard closed.
func (rt *Runtime) awaitStop(done <-chan struct{}, hard chan struct{}, all []*RunningStage) error {
	timer := time.NewTimer(rt.drain)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		close(hard) // unblock start/end events waiting on a stuck queue
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			return fmt.Errorf("stages did not stop within %s: %s", rt.drain+2*time.Second, rt.stuck(all))
		}
	}
	select {
	case <-hard:
	default:
		close(hard)
	}
	return nil
}

// Ready is closed once every stage is open (listeners bound) and running.
func (rt *Runtime) Ready() <-chan struct{} { return rt.ready }

// runStages runs each stage on its own goroutine and closes a stage's output
// queue once it returns, so the next stage drains and ends in turn.
func (rt *Runtime) runStages(ctx context.Context, stages []*RunningStage, failed chan error) {
	var wg sync.WaitGroup
	for _, rs := range stages {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out core.Output
			switch {
			case rs.tee != nil:
				out = rs.tee
			case rs.out != nil:
				out = rs.out
			default:
				out = discard{rs.Env.Metrics.Drop("sink_emitted")}
			}
			err := safeRun(ctx, rs, out)
			rs.done.Store(true)
			rs.closeOutput()
			if err != nil && !errors.Is(err, context.Canceled) {
				err = fmt.Errorf("pipeline %q stage %d (%s): %w", rs.Env.Pipeline, rs.Env.Index, rs.Env.Name, err)
				rs.Env.Log.Error("stage failed", "err", err)
				if failed != nil {
					failed <- err
				}
			}
		}()
	}
	wg.Wait()
}

// closeOutput closes the stage's output queues, so what follows drains and
// ends in turn.
func (rs *RunningStage) closeOutput() {
	switch {
	case rs.tee != nil:
		rs.tee.Close()
	case rs.out != nil:
		rs.out.Close()
	}
}

// safeRun turns a stage's panic into an error, so one bad stage stops the
// process cleanly instead of crashing it mid-write.
func safeRun(ctx context.Context, rs *RunningStage, out core.Output) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return rs.Stage.Run(ctx, rs.in, out)
}

func (rt *Runtime) stuck(all []*RunningStage) string {
	var names []string
	for _, rs := range all {
		if !rs.done.Load() {
			names = append(names, fmt.Sprintf("%s/%d (%s)", rs.Env.Pipeline, rs.Env.Index, rs.Env.Name))
		}
	}
	return fmt.Sprint(names)
}

// StreamStatus is one live stream as /api/streams shows it.
type StreamStatus struct {
	Name    string    `json:"name"`
	ID      uint64    `json:"id"`
	Started time.Time `json:"started"`
	Packets uint64    `json:"packets"`
	Bytes   uint64    `json:"bytes"`
}

// Streams lists the pipeline's live streams, by name.
func (p *Pipeline) Streams() []StreamStatus {
	p.mu.Lock()
	out := make([]StreamStatus, 0, len(p.streams))
	for s := range p.streams {
		out = append(out, StreamStatus{Name: s.Name, ID: s.ID, Started: s.Started, Packets: s.Packets.Load(), Bytes: s.Bytes.Load()})
	}
	p.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		return out[i].Name < out[j].Name || out[i].Name == out[j].Name && out[i].ID < out[j].ID
	})
	return out
}
