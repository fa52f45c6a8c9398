package bridge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/plugins/internal/pluginpb"
	"github.com/mediapipe/mediapipe/plugins/internal/shared"
)

// Restart back-off: the first retry comes after minBackoff, each failure
// doubles the wait up to maxBackoff; a process that lived stableAfter
// resets it.
const (
	minBackoff  = 50 * time.Millisecond
	maxBackoff  = 5 * time.Second
	stableAfter = 30 * time.Second
	// drainTimeout bounds how long the plugin may take to finish after its
	// input ended.
	drainTimeout = 5 * time.Second
	// DefaultRestartGrace is how long streams a dead plugin had made stay
	// open downstream for its next process to open again (Options.RestartGrace).
	DefaultRestartGrace = 5 * time.Second
)

// Stage is a pipeline stage served by a plugin process. It is what a
// plugin Definition's Build returns.
type Stage struct {
	path   string
	spec   core.Spec
	params map[string]*pluginpb.Value
	env    *core.Env
	log    *slog.Logger
	batch  int
	grace  time.Duration // streams of a dead process stay open this long

	// An isolated built-in: the program's arguments (its serve-stage
	// subcommand), and a restarted process is sent its streams' headers
	// again, as built-ins expect them in band.
	args          []string
	replayHeaders bool

	restarts    prometheus.Counter
	dropDown    *core.DropCounter // arrived while the plugin was down
	dropDied    *core.DropCounter // in flight when the plugin died
	dropUnknown *core.DropCounter // plugin output for a stream it never started
	dropRenamed *core.DropCounter // data of a host stream the plugin renamed in place

	procSlot // its mu also guards:
	running  bool
	stopped  bool
}

func newStage(path string, spec core.Spec, params map[string]*pluginpb.Value, env *core.Env, opts Options) *Stage {
	log := env.Log
	if log == nil {
		log = opts.log()
	}
	batch := opts.MaxBatch
	if batch <= 0 {
		batch = shared.DefaultBatch
	}
	grace := opts.RestartGrace
	switch {
	case grace == 0:
		grace = DefaultRestartGrace
	case grace < 0:
		grace = 0
	}
	s := &Stage{path: path, spec: spec, params: params, env: env, log: log, batch: batch, grace: grace}
	m := env.Metrics
	if m == nil {
		m = core.NewMetrics().Stage(env.Pipeline, env.Index, spec.Name)
	}
	s.restarts = m.Counter("restarts")
	s.dropDown, s.dropDied, s.dropUnknown = m.Drop("plugin_down"), m.Drop("plugin_died"), m.Drop("unknown_stream")
	s.dropRenamed = m.Drop("renamed_in_place")
	return s
}

// Open starts the plugin and builds its stage, so a bad parameter or a
// plugin that cannot start fails before anything runs. Should Run never
// come, the process is stopped when ctx ends.
func (s *Stage) Open(ctx context.Context) error {
	p, err := s.spawn()
	if err != nil {
		return err
	}
	s.swap(p)
	context.AfterFunc(ctx, func() {
		s.mu.Lock()
		idle := !s.running
		if idle {
			s.stopped = true
		}
		p := s.proc
		s.mu.Unlock()
		if idle && p != nil {
			p.kill()
		}
	})
	return nil
}

// spawn starts a process and opens the plugin's stage in it.
func (s *Stage) spawn() (*process, error) {
	p, err := startArgs(s.path, s.args, shared.KindStage, s.log)
	if err != nil {
		return nil, err
	}
	if p.spec.In != s.spec.In || p.spec.Out != s.spec.Out {
		p.kill()
		return nil, fmt.Errorf("plugin %s: now declares %s → %s, was %s → %s", s.path, p.spec.In, p.spec.Out, s.spec.In, s.spec.Out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), describeTimeout)
	defer cancel()
	_, err = p.stage.Open(ctx, &pluginpb.OpenRequest{
		Params: s.params, Pipeline: s.env.Pipeline, Index: int32(s.env.Index),
		Name: s.env.Name, Dir: s.env.Dir, MaxBatch: int32(s.batch),
	})
	if err != nil {
		p.kill()
		return nil, fmt.Errorf("plugin %s: %s", s.path, statusMessage(err))
	}
	s.log.Info("plugin started", "path", s.path, "pid", p.pid)
	return p, nil
}

// session is one Run call on one process.
type session struct {
	proc    *process
	rs      pluginpb.Stage_RunClient
	cancel  context.CancelFunc
	started time.Time
	done    chan struct{} // the receiver ended
	err     error         // why, once done is closed (nil: clean end)

	sent     uint64 // data packets handed to SendMsg (the loop's)
	consumed uint64 // the plugin's latest Batch.consumed (the receiver's until done)
}

// unfinished is how many data packets sent to the session the plugin never
// said it had finished. Only once done is closed.
func (sess *session) unfinished() int {
	if sess.consumed >= sess.sent {
		return 0
	}
	return int(sess.sent - sess.consumed)
}

// Run implements core.Stage: it streams in to the plugin and emits what the
// plugin emits, restarting the plugin when it dies.
func (s *Stage) Run(ctx context.Context, in <-chan *core.Packet, out core.Output) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("plugin stage is already running")
	}
	s.running = true
	p, stopped := s.proc, s.stopped
	s.mu.Unlock()
	if stopped {
		// The pipeline gave up before running (its context ended after
		// Open): the process is gone; drain and leave.
		if in != nil { // a source has none
			for p := range in {
				p.Release()
			}
		}
		return nil
	}
	r := &runner{
		s: s, out: out, streams: shared.NewTable(), entries: map[*core.Stream]*shared.Entry{},
		outStreams: map[uint64]*core.Stream{}, backoff: minBackoff, headers: newHeaders(s.spec.In, s.replayHeaders),
		rtp:  newRTPNumbering(s.spec, s.replayHeaders),
		held: map[string]heldStream{}, renamed: map[uint64]bool{},
	}
	defer r.shutdown()
	if p == nil || p.exited() {
		if p != nil {
			p.kill()
		}
		var err error
		if p, err = s.spawn(); err != nil {
			s.log.Error("plugin did not start", "err", err)
			p = nil
		}
	}
	if p == nil || !r.attach(p) {
		r.down()
	}
	var stop <-chan struct{}
	if in == nil {
		// A source: it runs until ctx ends.
		stop = ctx.Done()
	}
	return r.loop(in, stop)
}

// runner is the state of one Run.
type runner struct {
	s   *Stage
	out core.Output

	streams *shared.Table                  // streams the host announced
	entries map[*core.Stream]*shared.Entry // the same, by pointer, sender's own
	// streams the plugin has started downstream, by its wire id; the
	// receiver's, handed from one session to the next.
	outStreams map[uint64]*core.Stream

	// held are the streams a dead process had made, by name, kept open
	// downstream until its next process starts a stream of the same name
	// (the receiver re-attaches it) or their grace runs out (the loop ends
	// them): a restart does not cut viewers of a renamed stream.
	heldMu sync.Mutex
	held   map[string]heldStream
	expiry *time.Timer // the loop's: fires at the earliest held deadline

	renamed map[uint64]bool // host streams reported renamed in place (the receiver's)

	sess    *session
	headers *headers // what a restarted process is sent again
	rtp     *rtpNumbering
	retry   *time.Timer
	backoff time.Duration

	batch []*core.Packet
	msg   shared.OutBatch
}

func (r *runner) loop(in <-chan *core.Packet, stop <-chan struct{}) error {
	for {
		var dead <-chan struct{}
		if r.sess != nil {
			dead = r.sess.done
		}
		var retry, expiry <-chan time.Time
		if r.retry != nil {
			retry = r.retry.C
		}
		if r.expiry != nil {
			expiry = r.expiry.C
		}
		select {
		case p, ok := <-in:
			if !ok {
				r.finish()
				return nil
			}
			r.batch = append(r.batch[:0], p)
			closed := false
		drain:
			for len(r.batch) < r.s.batch {
				select {
				case p, ok := <-in:
					if !ok {
						closed = true
						break drain
					}
					r.batch = append(r.batch, p)
				default:
					break drain
				}
			}
			r.send(r.batch)
			clear(r.batch)
			if closed {
				r.finish()
				return nil
			}
		case <-stop:
			r.finish()
			return nil
		case <-dead:
			r.lost()
		case <-retry:
			r.retry = nil
			r.restart()
		case <-expiry:
			r.expiry = nil
			r.expire(false)
		}
	}
}

// send announces and forwards one batch, or drops its data while the
// plugin is down.
func (r *runner) send(batch []*core.Packet) {
	for _, p := range batch {
		switch p.Event {
		case core.EventStart:
			if p.Stream != nil {
				r.entries[p.Stream] = r.streams.Add(p.Stream.ID, p.Stream)
			}
		case core.EventEnd:
			if e := r.entries[p.Stream]; e != nil {
				r.streams.End(e)
			}
			r.headers.forget(p.Stream)
		default:
			r.headers.note(p)
		}
	}
	data := 0
	for _, p := range batch {
		if p.Event == core.EventData {
			data++
		}
	}
	if r.sess == nil {
		r.s.dropDown.Add(data)
		// No plugin will pass these ends on: end downstream what it had
		// started there. (No receiver runs while down.)
		for _, p := range batch {
			if p.Event != core.EventEnd || p.Stream == nil {
				continue
			}
			if st := r.outStreams[p.Stream.ID]; st != nil {
				delete(r.outStreams, p.Stream.ID)
				r.rtp.ended(st)
				r.out.Emit(core.NewEvent(core.EventEnd, st))
			}
		}
		r.release(batch)
		return
	}
	r.msg.Packets = r.msg.Packets[:0]
	for _, p := range batch {
		if p.Stream != nil {
			r.msg.Packets = append(r.msg.Packets, r.encode(p))
			if p.Event == core.EventData {
				// Counted before the send: a batch that fails is lost with
				// the rest.
				r.sess.sent++
			}
		}
	}
	err := r.sess.rs.SendMsg(&r.msg)
	clear(r.msg.Packets)
	r.release(batch)
	if err != nil {
		r.lost()
	}
}

func (r *runner) release(batch []*core.Packet) {
	for _, p := range batch {
		if p.Event == core.EventEnd {
			delete(r.entries, p.Stream)
		}
		p.Release()
	}
}

func (r *runner) encode(p *core.Packet) shared.OutPacket {
	s := p.Stream
	q := shared.OutPacket{P: p, Stream: s.ID}
	if p.Event == core.EventStart {
		q.Name = s.Name
	}
	if e := r.entries[s]; e != nil {
		if cur := s.Init(); cur != e.InitSent.Load() || (p.Event == core.EventStart && cur != nil) {
			q.Init, q.HasInit = cur, true
			e.InitSent.Store(cur)
		}
	}
	return q
}

// attach opens a Run call on p and starts its receiver.
func (r *runner) attach(p *process) bool {
	ctx, cancel := context.WithCancel(context.Background())
	rs, err := p.stage.Run(ctx, grpc.ForceCodecV2(shared.Codec))
	if err != nil {
		cancel()
		r.s.log.Error("plugin refused to run", "path", r.s.path, "err", statusMessage(err))
		p.kill()
		return false
	}
	sess := &session{proc: p, rs: rs, cancel: cancel, started: time.Now(), done: make(chan struct{})}
	r.s.mu.Lock()
	r.s.proc = p
	r.s.mu.Unlock()
	r.sess = sess
	r.rtp.restarted() // before the receiver that uses it starts
	go r.receive(sess)
	return true
}

// lost handles the death of the current session: the data packets the
// plugin had not finished were lost with it.
func (r *runner) lost() {
	sess := r.sess
	if sess == nil {
		return
	}
	r.sess = nil
	sess.cancel()
	<-sess.done
	sess.proc.kill()
	inflight := sess.unfinished()
	r.s.dropDied.Add(inflight)
	// Streams the dead process made itself (ids from the top half) are held
	// open for the next process to start again; streams it carried for the
	// host go on.
	held := r.hold()
	r.s.mu.Lock()
	if r.s.proc == sess.proc {
		r.s.proc = nil
	}
	r.s.mu.Unlock()
	if time.Since(sess.started) > stableAfter {
		r.backoff = minBackoff
	}
	r.s.log.Warn("plugin died; restarting", "path", r.s.path, "pid", sess.proc.pid, "err", sess.err,
		"dropped_in_flight", inflight, "in", r.backoff, "streams_held", held, "grace", r.s.grace)
	r.down()
}

// heldStream is a stream of a dead process kept open until deadline.
type heldStream struct {
	s        *core.Stream
	deadline time.Time
}

// hold moves the streams the dead process had made from outStreams to held
// (without a grace: ends them) and returns their names. No receiver runs.
func (r *runner) hold() []string {
	var names []string
	var ended []*core.Stream
	deadline := time.Now().Add(r.s.grace)
	r.heldMu.Lock()
	for id, st := range r.outStreams {
		if id&(1<<63) == 0 {
			continue
		}
		delete(r.outStreams, id)
		names = append(names, st.Name)
		if r.s.grace == 0 {
			ended = append(ended, st)
			continue
		}
		if old, dup := r.held[st.Name]; dup {
			// Two streams of one name: only one can be re-attached.
			ended = append(ended, old.s)
		}
		r.held[st.Name] = heldStream{s: st, deadline: deadline}
	}
	r.heldMu.Unlock()
	for _, st := range ended {
		r.out.Emit(core.NewEvent(core.EventEnd, st))
	}
	sort.Strings(names)
	if r.s.grace > 0 && r.expiry == nil && len(names) > 0 {
		r.expiry = time.NewTimer(r.s.grace)
	}
	return names
}

// expire ends the held streams whose grace ran out (all: every one) and
// arms the timer for the next deadline.
func (r *runner) expire(all bool) {
	now := time.Now()
	var ended []*core.Stream
	var next time.Time
	r.heldMu.Lock()
	for name, h := range r.held {
		if all || !h.deadline.After(now) {
			ended = append(ended, h.s)
			delete(r.held, name)
		} else if next.IsZero() || h.deadline.Before(next) {
			next = h.deadline
		}
	}
	r.heldMu.Unlock()
	if r.expiry != nil {
		r.expiry.Stop()
		r.expiry = nil
	}
	if !next.IsZero() {
		r.expiry = time.NewTimer(next.Sub(now))
	}
	if len(ended) == 0 {
		return
	}
	sort.Slice(ended, func(i, j int) bool { return ended[i].Name < ended[j].Name })
	names := make([]string, len(ended))
	for i, st := range ended {
		names[i] = st.Name
		r.out.Emit(core.NewEvent(core.EventEnd, st))
	}
	if !all {
		r.s.log.Warn("plugin did not start its streams again within the restart grace; ended them",
			"path", r.s.path, "streams", names, "grace", r.s.grace)
	}
}

// reattach returns the held stream named name, taking it out of held, or nil.
func (r *runner) reattach(name string) *core.Stream {
	r.heldMu.Lock()
	defer r.heldMu.Unlock()
	h, ok := r.held[name]
	if !ok {
		return nil
	}
	delete(r.held, name)
	return h.s
}

// down schedules the next start attempt.
func (r *runner) down() {
	r.retry = time.NewTimer(r.backoff)
	r.backoff = min(2*r.backoff, maxBackoff)
}

func (r *runner) restart() {
	r.s.mu.Lock()
	stopped := r.s.stopped
	r.s.mu.Unlock()
	if stopped {
		return
	}
	p, err := r.s.spawn()
	if err != nil {
		r.s.log.Error("plugin restart failed", "err", err, "next", r.backoff)
		r.down()
		return
	}
	if !r.attach(p) {
		r.down()
		return
	}
	r.s.restarts.Inc()
	// Tell the new process about the streams that are live, so it goes on
	// with them.
	live := r.streams.Live()
	sort.Slice(live, func(i, j int) bool { return live[i].ID < live[j].ID })
	batch := make([]*core.Packet, 0, len(live))
	for _, e := range live {
		e.InitSent.Store(nil)
		batch = append(batch, core.NewEvent(core.EventStart, e.S))
		batch = append(batch, r.headers.replay(e.S)...)
	}
	if len(batch) > 0 {
		r.send(batch)
	}
}

// finish ends the input: the plugin drains and ends its call, then streams
// it left open are ended downstream and the process is stopped.
func (r *runner) finish() {
	if r.retry != nil {
		r.retry.Stop()
		r.retry = nil
	}
	if sess := r.sess; sess != nil {
		_ = sess.rs.CloseSend()
		t := time.NewTimer(drainTimeout)
		select {
		case <-sess.done:
			t.Stop()
		case <-t.C:
			r.s.log.Warn("plugin did not finish in time after its input ended", "path", r.s.path)
		}
		sess.cancel()
		<-sess.done
		if sess.err != nil && !errors.Is(sess.err, context.Canceled) {
			r.s.log.Error("plugin stage failed", "path", r.s.path, "err", sess.err)
		}
		// A plugin that finished cleanly consumed everything; one that
		// failed or was cut off by the drain timeout lost the rest.
		if n := sess.unfinished(); n > 0 {
			r.s.dropDied.Add(n)
			r.s.log.Warn("plugin ended without finishing its input", "path", r.s.path, "dropped_in_flight", n)
		}
		r.sess = nil
	}
	r.expire(true)
	ids := make([]uint64, 0, len(r.outStreams))
	for id := range r.outStreams {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		r.out.Emit(core.NewEvent(core.EventEnd, r.outStreams[id]))
		delete(r.outStreams, id)
	}
}

// shutdown stops the process whatever happened.
func (r *runner) shutdown() {
	r.headers.clear()
	if r.sess != nil {
		r.sess.cancel()
		<-r.sess.done
	}
	r.s.mu.Lock()
	r.s.stopped = true
	p := r.s.proc
	r.s.proc = nil
	r.s.mu.Unlock()
	if p != nil {
		p.kill()
	}
}

// receive emits what the plugin sends until its call ends.
func (r *runner) receive(sess *session) {
	defer close(sess.done)
	var b shared.InBatch
	for {
		if err := sess.rs.RecvMsg(&b); err != nil {
			if err != io.EOF {
				sess.err = errors.New(statusMessage(err))
			}
			return
		}
		sess.consumed = max(sess.consumed, b.Consumed)
		for i := range b.Packets {
			r.emit(&b.Packets[i])
		}
	}
}

func (r *runner) emit(q *shared.InPacket) {
	if q.Name != "" && q.Stream&(1<<63) == 0 && r.renamedInPlace(q) && q.Event == core.EventData {
		q.P.Release()
		r.s.dropRenamed.Inc()
		return
	}
	s := r.outStreams[q.Stream]
	switch q.Event {
	case core.EventStart:
		if s != nil {
			// Re-announced after a restart: downstream knows it already.
			r.setInit(q, s)
			return
		}
		if e := r.streams.ByID(q.Stream); e != nil {
			s = e.S
		} else if s = r.reattach(q.Name); s != nil {
			// The new process opened again a stream its predecessor had
			// made: downstream never saw it end.
			r.outStreams[q.Stream] = s
			r.setInit(q, s)
			r.s.log.Info("plugin started a held stream again; re-attached", "path", r.s.path, "stream", q.Name)
			return
		} else {
			s = core.NewStream(q.Name)
		}
		r.outStreams[q.Stream] = s
		r.setInit(q, s)
		r.out.Emit(core.NewEvent(core.EventStart, s))
	case core.EventEnd:
		delete(r.renamed, q.Stream)
		if s == nil {
			return
		}
		delete(r.outStreams, q.Stream)
		r.rtp.ended(s)
		r.out.Emit(core.NewEvent(core.EventEnd, s))
	default:
		if s == nil {
			q.P.Release()
			r.s.dropUnknown.Inc()
			return
		}
		r.setInit(q, s)
		q.P.Stream = s
		r.rtp.fix(q.P, s)
		r.out.Emit(q.P)
	}
}

// renamedInPlace reports whether q names a host stream by another name:
// the plugin set Stream.Name on a stream it was given, which cannot rename
// it downstream. Said once per stream; the caller drops its data.
func (r *runner) renamedInPlace(q *shared.InPacket) bool {
	e := r.streams.ByID(q.Stream)
	if e == nil || e.S.Name == q.Name {
		return false
	}
	if !r.renamed[q.Stream] {
		r.renamed[q.Stream] = true
		r.s.log.Error("plugin renamed a stream in place (set Stream.Name); its data is dropped: emit on a new stream instead (sdk.Derived, see docs/plugins.md, Renaming and splitting streams)",
			"path", r.s.path, "stream", e.S.Name, "renamed_to", q.Name)
	}
	return true
}

func (r *runner) setInit(q *shared.InPacket, s *core.Stream) {
	if q.Init == nil {
		return
	}
	s.SetInit(q.Init)
	if e := r.streams.ByID(q.Stream); e != nil && e.S == s {
		e.InitSent.Store(q.Init)
	}
}
