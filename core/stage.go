package core

import (
	"context"
	"log/slog"
	"path/filepath"
)

// Stage is one step of a pipeline. Run is called once, on its own goroutine.
//
// A source (Spec.In == KindNone) gets a nil in; it produces packets until ctx
// is cancelled, then ends every stream it opened (EventEnd) and returns.
// Every other stage reads in until it is closed and returns then; it uses ctx
// only to stop its own listeners and helpers. Every goroutine a stage starts
// must have ended, and must no longer call out.Emit, when Run returns.
//
// A sink (Spec.Out == KindNone) gets an Output that discards and counts.
type Stage interface {
	Run(ctx context.Context, in <-chan *Packet, out Output) error
}

// Opener is implemented by stages that bind listeners or check resources
// before the pipeline starts. Open runs for every stage, in order, before any
// Run; an error stops the whole process with that error.
type Opener interface {
	Open(ctx context.Context) error
}

// Output hands packets to the next stage, which then owns them. A data
// packet that finds the next queue full waits for room, but no longer than
// host.QueueWait (100 ms) from when the queue was first found full; then the
// queue counts as congested and each data packet is dropped at once —
// released and counted ("queue_full") — until the queue has drained to half.
// So a stuck stage costs its producer one bounded wait, not one per packet.
// Start and end events wait for room, since losing one would leak
// per-stream state downstream. Emit is safe for concurrent use.
type Output interface {
	Emit(p *Packet)
}

// Env is what the runtime gives a stage when building it.
type Env struct {
	Pipeline string // pipeline name
	Index    int    // 1-based position in the pipeline
	Name     string // stage name: a built-in's, or the one a plugin's spec declares
	Dir      string // directory of the pipeline file, for relative paths
	Log      *slog.Logger
	Metrics  *StageMetrics
	Clock    Clock
	// Sessions registers the publishers and viewers the stage serves, for
	// the control API and the publish/play notices; Events carries the
	// other notices (record_done). Both are the runtime's, shared by every
	// pipeline; nil (a stage built by hand) registers and publishes nothing.
	Sessions *Sessions
	Events   *Bus
	// Siblings lists the stages of this stage's pipeline running now
	// (after a reload, the new ones), in order: the transmission
	// controller in fec-encoder finds udp-sink and quic-retransmit
	// through it. Nil for a stage built by hand.
	Siblings func() []Stage
}

// Path resolves a path a stage's parameter names: a relative one is taken
// from the pipeline file's directory, as users write them.
func (e *Env) Path(path string) string { return InDir(e.Dir, path) }

// InDir resolves path against dir (the pipeline file's directory) unless it
// is empty, absolute, or dir is unknown: for a config's ValidateIn, which
// has the directory but no Env yet.
func InDir(dir, path string) string {
	if path == "" || dir == "" || filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(dir, path)
}

// TestEnv returns an Env with a discarding logger, private metrics and the
// real clock: for unit tests and for tools that build stages by hand.
func TestEnv(name string) *Env {
	env := &Env{
		Pipeline: "test", Index: 1, Name: name, Dir: ".",
		Log:     slog.New(slog.DiscardHandler),
		Metrics: NewMetrics().Stage("test", 1, name),
		Clock:   RealClock{},
	}
	env.Events = NewBus()
	env.Sessions = NewSessions(env.Events)
	env.Metrics.SetLogger(env.Log)
	return env
}
