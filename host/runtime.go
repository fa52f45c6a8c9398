// Package host loads pipeline files, builds and runs their stages with queues
// between them, serves the admin endpoints and renders the stage reference.
package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
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
	// after the sources stopped (default 5 s). A reload waits as long for
	// the pipelines it stops.
	DrainTimeout time.Duration
	// Reload re-reads the pipeline file for a reload (SIGHUP, POST
	// /api/reload, run --watch); nil refuses reloads.
	Reload func() (*File, error)
	// LogChanged, if set, gets the [log] table of every applied reload, so
	// the command can apply a new level.
	LogChanged func(LogConfig)
}

// Runtime is a built set of pipelines. Run runs it once; while it runs,
// Reload swaps in a new version of the file, pipeline by pipeline.
type Runtime struct {
	Metrics *core.Metrics
	// Events and Sessions are the process's notice bus and its registry of
	// publishers and viewers: one each per Runtime, shared by every
	// pipeline and kept across reloads.
	Events   *core.Bus
	Sessions *core.Sessions
	hooks    *hookSet // the [[hook]]s sending now; replaced on reload
	rates    rates    // bitrates for the API
	log      *slog.Logger
	opts     Options
	ready    chan struct{}

	mu sync.RWMutex
	// File is the configuration running now: after a reload, the new
	// file with the configs of the pipelines it left running.
	File      *File
	Pipelines []*Pipeline // in File's order; read them through Running while Run runs
	// AdminAddr is where the admin server listens once Run has started it.
	AdminAddr net.Addr

	reloadMu sync.Mutex // one reload at a time
	reloads  chan *reloadRequest
	failed   chan error    // capacity 1: the first stage failure stops Run
	exited   chan struct{} // a pipeline's stages have all returned
	stop     chan struct{} // closed once Run no longer serves reloads
	admin    *admin
}

// Pipeline is one running pipeline: its stages and the streams live in it.
type Pipeline struct {
	Name   string
	From   string // the stage id this branch receives from; "" when it has a source
	Stages []*RunningStage

	mu       sync.Mutex
	streams  map[*core.Stream]struct{}
	events   *core.Bus      // stream_start and stream_end go there
	sessions *core.Sessions // told when a stream ends (per-stream metrics)

	config *PipelineConfig
	input  *branchOutput // a branch's queue, attached to tee
	tee    *teeOutput    // the tapped stage's output
	ctx    context.Context
	cancel context.CancelFunc
	hard   chan struct{} // closed when shutdown stops waiting on stuck queues
	done   chan struct{} // closed when every stage has returned
	opened int           // how many stages Open has succeeded on
	// stopping: a reload or shutdown is stopping the pipeline, so an error
	// a stage returns on the way out is logged, not a failure of the process.
	stopping atomic.Bool
}

// RunningStage is one built stage with its place and queues.
type RunningStage struct {
	Config *StageConfig
	Env    *core.Env
	Stage  core.Stage
	in     chan *core.Packet
	out    *chanOutput // nil for sinks
	tee    *teeOutput  // for a stage with an id: pipelines may branch off it
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
	bus := core.NewBus()
	rt := &Runtime{
		File: f, Metrics: opts.Metrics, log: opts.Logger, opts: opts,
		Events: bus, Sessions: core.NewSessions(bus),
		ready:   make(chan struct{}),
		reloads: make(chan *reloadRequest),
		failed:  make(chan error, 1),
		exited:  make(chan struct{}, 1),
		stop:    make(chan struct{}),
	}
	rt.Sessions.SetLive(func(k core.StreamKey) bool {
		for _, p := range rt.Running() {
			if p.Name == k.Pipeline {
				return p.Carries(k.Stream)
			}
		}
		return false
	})
	registerStreamMetrics(rt)
	registerEdgeMetrics(rt)
	registerControlMetrics(rt)
	var errs []error
	for _, pc := range f.Pipelines {
		p, err := rt.buildPipeline(f, pc)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		rt.Pipelines = append(rt.Pipelines, p)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for _, p := range rt.Pipelines {
		if err := rt.branch(p, rt.Pipelines); err != nil {
			return nil, err
		}
	}
	return rt, nil
}

// buildPipeline builds pc's stages and the queues between them.
func (rt *Runtime) buildPipeline(f *File, pc *PipelineConfig) (*Pipeline, error) {
	p := &Pipeline{Name: pc.Name, From: pc.From, config: pc, streams: map[*core.Stream]struct{}{}, events: rt.Events,
		sessions: rt.Sessions, hard: make(chan struct{}), done: make(chan struct{})}
	var errs []error
	for _, sc := range pc.Stages {
		log := rt.log.With("pipeline", pc.Name, "stage", sc.Index, "name", sc.SpecName())
		sm := rt.Metrics.Stage(pc.Name, sc.Index, sc.SpecName())
		sm.SetLogger(log)
		env := &core.Env{Pipeline: pc.Name, Index: sc.Index, Name: sc.SpecName(), Dir: f.Dir, Log: log, Metrics: sm, Clock: rt.opts.Clock,
			Sessions: rt.Sessions, Events: rt.Events, Siblings: rt.siblingsOf(pc.Name)}
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
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	// Wire each stage's output to the next stage's queue.
	for i, rs := range p.Stages {
		if i+1 >= len(p.Stages) {
			break
		}
		next := p.Stages[i+1]
		rs.out = &chanOutput{
			ch:   next.in,
			out:  rs.Env.Metrics.Out,
			in:   next.Env.Metrics.In,
			full: next.Env.Metrics.Drop("queue_full"),
			gone: next.Env.Metrics.Drop("stage_stopped"),
			wait: QueueWait,
			hard: p.hard,
		}
		if i == 0 {
			rs.out.track = p
			rs.out.log = rs.Env.Log
		}
		if rs.Config.ID != "" {
			rs.tee = newTee(rs.out, mutatesAfter(p, rs))
		}
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p, nil
}

// branch attaches p, when it has from, to the tee of the stage among pipes
// whose id it names.
func (rt *Runtime) branch(p *Pipeline, pipes []*Pipeline) error {
	if p.From == "" {
		return nil
	}
	var tapped *RunningStage
	for _, o := range pipes {
		for _, rs := range o.Stages {
			if rs.Config.ID == p.From {
				tapped = rs
			}
		}
	}
	if tapped == nil || tapped.tee == nil || len(p.Stages) == 0 || p.Stages[0].in == nil {
		// Resolve refuses such a file; Build is also called on files
		// assembled by hand.
		return fmt.Errorf("%s: pipeline %q: from %q names no stage with an output that its first stage can take", rt.File.Path, p.Name, p.From)
	}
	p.input = newBranchOutput(p, p.Stages[0], mutatesAfter(p, nil))
	p.input.hard = p.hard
	p.tee = tapped.tee
	p.tee.attach(p.input)
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

// Running returns the pipelines running now, in the file's order.
func (rt *Runtime) Running() []*Pipeline {
	rt.mu.RLock()
	defer rt.mu.RUnlock()
	return slices.Clone(rt.Pipelines)
}

// siblingsOf lists the stages of the pipeline named name as running at
// the time of the call (core.Env.Siblings).
func (rt *Runtime) siblingsOf(name string) func() []core.Stage {
	return func() []core.Stage {
		for _, p := range rt.Running() {
			if p.Name != name {
				continue
			}
			out := make([]core.Stage, 0, len(p.Stages))
			for _, rs := range p.Stages {
				out = append(out, rs.Stage)
			}
			return out
		}
		return nil
	}
}

// Config returns the configuration running now (see File).
func (rt *Runtime) Config() *File {
	rt.mu.RLock()
	defer rt.mu.RUnlock()
	return rt.File
}

// Run opens every stage, runs them until ctx is cancelled or a stage fails,
// then stops the sources, lets the rest drain and returns. It returns nil
// after a clean shutdown. While it runs it applies reloads.
func (rt *Runtime) Run(ctx context.Context) error {
	// Last of all: write the held-back drop summaries, stop their timer.
	defer rt.Metrics.Close()
	defer close(rt.stop)
	rt.hooks = startHooks(rt.File.Hooks, rt.Events, rt.Metrics, rt.log)
	// After the pipelines stopped (their last notices published), the
	// hooks get a bounded time to deliver.
	defer func() { rt.hooks.close(hookDrain) }()
	pipes := rt.Running()
	if err := rt.open(pipes); err != nil {
		return err
	}
	if rt.File.Admin != nil {
		a, err := rt.startAdmin(rt.File.Admin)
		if err != nil {
			rt.abort(pipes)
			return err
		}
		rt.admin = a
	}
	defer func() { rt.admin.close() }()
	for _, p := range pipes {
		rt.launch(p)
	}
	close(rt.ready)

	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case runErr = <-rt.failed:
			break loop
		case <-rt.exited:
			if rt.allDone() {
				break loop
			}
		case req := <-rt.reloads:
			req.reply <- rt.apply(req.file)
		}
	}
	rt.log.Info("stopping")
	pipes = rt.Running()
	if err := rt.stopPipelines(pipes); err != nil {
		return errors.Join(runErr, err)
	}
	return runErr
}

// open opens every stage of pipes that is an Opener, in order. On failure
// it stops what it opened and returns the error.
func (rt *Runtime) open(pipes []*Pipeline) error {
	for _, p := range pipes {
		for _, rs := range p.Stages {
			if o, ok := rs.Stage.(core.Opener); ok {
				if err := o.Open(p.ctx); err != nil {
					rt.abort(pipes)
					return fmt.Errorf("pipeline %q stage %d (%s): %w", rs.Env.Pipeline, rs.Env.Index, rs.Env.Name, err)
				}
			}
			p.opened++
		}
	}
	return nil
}

// abort ends pipes that were opened, wholly or in part, but not launched:
// with their contexts cancelled the sources return at once and each closed
// output ends the next stage, so the opened stages release what Open bound.
func (rt *Runtime) abort(pipes []*Pipeline) {
	for _, p := range pipes {
		p.stopping.Store(true)
		p.cancel()
		close(p.hard)
		if p.input != nil {
			p.tee.detach(p.input)
		}
		rt.launch(p)
	}
	for _, p := range pipes {
		<-p.done
	}
}

// launch runs p's opened stages, each on its own goroutine; an unopened
// stage's output is closed at once, so what follows it ends too.
func (rt *Runtime) launch(p *Pipeline) {
	go func() {
		var pump sync.WaitGroup
		if p.input != nil {
			pump.Go(p.input.pump) // returns once the branch is closed
		}
		for _, rs := range p.Stages[p.opened:] {
			rs.done.Store(true)
			rs.closeOutput()
		}
		rt.runStages(p, p.Stages[:p.opened])
		pump.Wait()
		close(p.done)
		select {
		case rt.exited <- struct{}{}:
		default: // Run is told already
		}
	}()
}

// allDone says whether every running pipeline has ended by itself.
func (rt *Runtime) allDone() bool {
	for _, p := range rt.Running() {
		select {
		case <-p.done:
		default:
			return false
		}
	}
	return true
}

// stopPipelines stops pipes as at shutdown and waits for them: a source
// stops and ends its streams, a branch is detached from what it taps and
// ends its streams, and everything after drains. It waits up to the drain
// timeout, then 2 s more with start and end events no longer waiting on a
// stuck queue (hard closed).
func (rt *Runtime) stopPipelines(pipes []*Pipeline) error {
	for _, p := range pipes {
		p.stopping.Store(true)
		if p.input != nil {
			p.tee.detach(p.input)
		}
		p.cancel()
	}
	timer := time.NewTimer(rt.opts.DrainTimeout)
	defer timer.Stop()
	if !waitDone(pipes, timer.C) {
		for _, p := range pipes {
			closeOnce(p.hard) // unblock start/end events waiting on a stuck queue
		}
		if !waitDone(pipes, time.After(2*time.Second)) {
			return fmt.Errorf("stages did not stop within %s: %s", rt.opts.DrainTimeout+2*time.Second, stuck(pipes))
		}
	}
	for _, p := range pipes {
		closeOnce(p.hard)
	}
	return nil
}

// waitDone waits until every pipeline of pipes is done, or until timeout.
func waitDone(pipes []*Pipeline, timeout <-chan time.Time) bool {
	for _, p := range pipes {
		select {
		case <-p.done:
		case <-timeout:
			return false
		}
	}
	return true
}

func closeOnce(ch chan struct{}) {
	select {
	case <-ch:
	default:
		close(ch)
	}
}

// Ready is closed once every stage is open (listeners bound) and running.
func (rt *Runtime) Ready() <-chan struct{} { return rt.ready }

// runStages runs each stage on its own goroutine and closes a stage's output
// queue once it returns, so the next stage drains and ends in turn. The
// first failure is handed to Run, which stops the process.
func (rt *Runtime) runStages(p *Pipeline, stages []*RunningStage) {
	var wg sync.WaitGroup
	for _, rs := range stages {
		wg.Go(func() {
			var out core.Output
			switch {
			case rs.tee != nil:
				out = rs.tee
			case rs.out != nil:
				out = rs.out
			default:
				out = discard{rs.Env.Metrics.Drop("sink_emitted")}
			}
			err := safeRun(p.ctx, rs, out)
			rs.done.Store(true)
			rs.closeOutput()
			if err != nil && !errors.Is(err, context.Canceled) {
				err = fmt.Errorf("pipeline %q stage %d (%s): %w", rs.Env.Pipeline, rs.Env.Index, rs.Env.Name, err)
				rs.Env.Log.Error("stage failed", "err", err)
				if p.stopping.Load() {
					return
				}
				select {
				case rt.failed <- err:
				default: // the first failure stops Run already
				}
			}
		})
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

func stuck(pipes []*Pipeline) string {
	var names []string
	for _, p := range pipes {
		for _, rs := range p.Stages {
			if !rs.done.Load() {
				names = append(names, fmt.Sprintf("%s/%d (%s)", rs.Env.Pipeline, rs.Env.Index, rs.Env.Name))
			}
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
	// BitrateIn is what the source receives, BitrateOut what the
	// pipeline's viewers are sent (summed), in bits per second; Viewers
	// counts them (HLS: clients that asked within a segment window).
	BitrateIn  float64 `json:"bitrate_in"`
	BitrateOut float64 `json:"bitrate_out"`
	Viewers    int     `json:"viewers"`
}

// streamStarted records s as live in p and publishes stream_start. A
// pipeline's streams are those its source (or, for a branch, the tapped
// stage) hands on: what the pipeline serves, so an edge reports its own.
func (p *Pipeline) streamStarted(s *core.Stream) {
	p.mu.Lock()
	p.streams[s] = struct{}{}
	p.mu.Unlock()
	p.events.Publish(core.Notice{Name: core.NoticeStreamStart, Stream: s.Name, Pipeline: p.Name})
}

// streamEnded forgets s and publishes stream_end; it says whether s was
// live (an end without a start publishes nothing).
func (p *Pipeline) streamEnded(s *core.Stream) bool {
	p.mu.Lock()
	_, live := p.streams[s]
	delete(p.streams, s)
	again := p.carriesLocked(s.Name) // a newer stream took the name over
	p.mu.Unlock()
	if live {
		p.events.Publish(core.Notice{Name: core.NoticeStreamEnd, Stream: s.Name, Pipeline: p.Name})
	}
	if !again {
		p.sessions.ForgetStream(p.Name, s.Name)
	}
	return live
}

// Carries says whether a stream named name is live in p.
func (p *Pipeline) Carries(name string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.carriesLocked(name)
}

func (p *Pipeline) carriesLocked(name string) bool {
	for s := range p.streams {
		if s.Name == name {
			return true
		}
	}
	return false
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
