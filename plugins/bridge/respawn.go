package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// maxTimeouts is how many calls in a row may run out of their deadline
// before a policy's process is taken for hung and killed: a live process
// that never answers would otherwise never be replaced.
const maxTimeouts = 3

// respawner holds the process of a plugin that serves calls (an SR backend,
// a policy): a call that finds the process dead starts it again, with the
// stage bridge's back-off: a start is tried no sooner than the back-off after
// the previous one (50 ms, doubling up to 5 s while processes die young or
// fail to start; reset once one has run 30 s). Calls in between fail at once,
// so the caller falls back instead of waiting. The start runs in the
// background (it may take StartTimeout): the call that began it waits for it
// no longer than its context allows, and calls meanwhile fail at once.
type respawner struct {
	path  string
	kind  string // shared.KindSR or shared.KindPolicy
	label string // "sr plugin", "policy plugin": how errors and logs name it

	procSlot // its mu also guards:
	log      *slog.Logger
	restarts prometheus.Counter // nil: restarts are logged only
	started  time.Time          // of proc, or of the last start attempt
	backoff  time.Duration
	starting bool // a start runs in the background
	timeouts int  // calls of proc in a row that ran out of their deadline
	closed   bool
	now      func() time.Time // time.Now; tests move it

	bg sync.WaitGroup // background starts and kills; tests wait for them
}

// newRespawner holds p, just started from path.
func newRespawner(p *process, kind, label string, log *slog.Logger) respawner {
	return respawner{
		path: p.path, kind: kind, label: label, procSlot: procSlot{proc: p}, log: log,
		started: time.Now(), backoff: minBackoff, now: time.Now,
	}
}

// startResult is what a background start hands the call that began it.
type startResult struct {
	p   *process
	err error
}

// current returns the running process, starting it again when it died and
// the back-off allows. It never holds mu across a start or a kill, and
// returns when ctx is done even if the start it began is still running.
func (r *respawner) current(ctx context.Context) (*process, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, fmt.Errorf("%s %s: closed", r.label, r.path)
	}
	if r.starting {
		r.mu.Unlock()
		return nil, fmt.Errorf("%s %s: restarting", r.label, r.path)
	}
	if r.proc != nil && !r.proc.exited() {
		p := r.proc
		r.mu.Unlock()
		return p, nil
	}
	now := r.now()
	var old *process
	if r.proc != nil {
		old = r.proc
		r.retireLocked(now, "died")
	}
	if next := r.started.Add(r.backoff); now.Before(next) {
		r.mu.Unlock()
		r.killInBackground(old)
		return nil, fmt.Errorf("%s %s: down, next start in %s", r.label, r.path, next.Sub(now).Round(time.Millisecond))
	}
	r.started = now
	// Whatever happens to this start, the next one waits longer unless the
	// process lives stableAfter.
	wait := r.backoff
	r.backoff = min(2*r.backoff, maxBackoff)
	r.starting = true
	log := r.log
	res := make(chan startResult, 1) // the caller may be gone when it is sent
	r.bg.Add(1)
	r.mu.Unlock()
	go r.restart(old, wait, log, res)
	select {
	case s := <-res:
		return s.p, s.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%s %s: restarting: %w", r.label, r.path, ctx.Err())
	}
}

// restart kills what is left of the old process, starts a new one and
// installs it, unless the respawner was closed meanwhile: then the new
// process is killed.
func (r *respawner) restart(old *process, wait time.Duration, log *slog.Logger, res chan<- startResult) {
	defer r.bg.Done()
	if old != nil {
		old.kill()
	}
	p, err := start(r.path, r.kind, log)
	r.mu.Lock()
	r.starting = false
	closed := r.closed
	switch {
	case err != nil:
		r.log.Error(r.label+" restart failed", "path", r.path, "err", err, "next_in", r.backoff)
	case !closed:
		r.proc, r.timeouts = p, 0
		if r.restarts != nil {
			r.restarts.Inc()
		}
		r.log.Warn(r.label+" restarted", "path", r.path, "pid", p.pid, "after", wait)
	}
	r.mu.Unlock()
	if err == nil && closed {
		p.kill()
		p, err = nil, fmt.Errorf("%s %s: closed", r.label, r.path)
	}
	res <- startResult{p, err}
}

// retireLocked takes the current process out of service (it died, or hangs)
// and resets the back-off if it ran long enough. r.mu is held; the caller
// kills the process.
func (r *respawner) retireLocked(now time.Time, why string) {
	lived := now.Sub(r.started)
	r.log.Warn(r.label+" "+why, "path", r.path, "pid", r.proc.pid, "lived", lived.Round(time.Millisecond))
	r.proc, r.timeouts = nil, 0
	if lived > stableAfter {
		r.backoff = minBackoff
	}
}

// killInBackground kills p (which may take killGrace) without holding up
// the caller.
func (r *respawner) killInBackground(p *process) {
	if p == nil {
		return
	}
	r.bg.Add(1)
	go func() {
		defer r.bg.Done()
		p.kill()
	}()
}

// timedOut reports whether a call's error means it ran out of its deadline.
func timedOut(ctx context.Context, err error) bool {
	return errors.Is(ctx.Err(), context.DeadlineExceeded) || status.Code(err) == codes.DeadlineExceeded
}

// called records how a call of p ended: after maxTimeouts calls in a row
// ran out of their deadline, p is taken for hung and killed, so the next
// call starts a new process (after the back-off).
func (r *respawner) called(p *process, timedOut bool) {
	r.mu.Lock()
	if r.proc != p {
		r.mu.Unlock()
		return
	}
	if !timedOut {
		r.timeouts = 0
		r.mu.Unlock()
		return
	}
	r.timeouts++
	if r.timeouts < maxTimeouts {
		r.mu.Unlock()
		return
	}
	r.retireLocked(r.now(), fmt.Sprintf("hung (%d calls in a row without an answer within their deadline): killed", maxTimeouts))
	r.mu.Unlock()
	r.killInBackground(p)
}

// exitedSoon reports whether proc has exited or does within a moment (at
// most 100 ms, and not past ctx): a connection that broke because the
// process died is seen before go-plugin has reaped it.
func exitedSoon(ctx context.Context, proc *process) bool {
	t := time.NewTimer(100 * time.Millisecond)
	defer t.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !proc.exited() {
		select {
		case <-tick.C:
		case <-t.C:
			return false
		case <-ctx.Done():
			return proc.exited()
		}
	}
	return true
}

// gone starts the replacement of p, a process a call found dead, in the
// background at once (as far as the back-off allows), rather than on the
// next call.
func (r *respawner) gone(p *process) {
	r.mu.Lock()
	dead := r.proc == p && p.exited()
	r.mu.Unlock()
	if dead {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // begin the start, do not wait for it
		_, _ = r.current(ctx)
	}
}

// close stops the process for good. A start under way is not waited for:
// its process is killed when it comes up.
func (r *respawner) close() {
	r.mu.Lock()
	p := r.proc
	r.proc, r.closed = nil, true
	r.mu.Unlock()
	if p != nil {
		p.kill()
	}
}
