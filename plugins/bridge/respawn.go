package bridge

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// respawner holds the process of a plugin that serves calls (an SR backend,
// a policy): a call that finds the process dead starts it again, with the
// stage bridge's back-off: a start is tried no sooner than the back-off after
// the previous one (50 ms, doubling up to 5 s while processes die young or
// fail to start; reset once one has run 30 s). Calls in between fail at once,
// so the caller falls back instead of waiting.
type respawner struct {
	path  string
	kind  string // shared.KindSR or shared.KindPolicy
	label string // "sr plugin", "policy plugin": how errors and logs name it

	procSlot // its mu also guards:
	log      *slog.Logger
	restarts prometheus.Counter // nil: restarts are logged only
	started  time.Time          // of proc, or of the last start attempt
	backoff  time.Duration
	closed   bool
	now      func() time.Time // time.Now; tests move it
}

// newRespawner holds p, just started from path.
func newRespawner(p *process, kind, label string, log *slog.Logger) respawner {
	return respawner{
		path: p.path, kind: kind, label: label, procSlot: procSlot{proc: p}, log: log,
		started: time.Now(), backoff: minBackoff, now: time.Now,
	}
}

// current returns the running process, starting it again when it died and
// the back-off allows.
func (r *respawner) current() (*process, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, fmt.Errorf("%s %s: closed", r.label, r.path)
	}
	if r.proc != nil && !r.proc.exited() {
		return r.proc, nil
	}
	now := r.now()
	if r.proc != nil {
		r.proc.kill()
		lived := now.Sub(r.started)
		r.log.Warn(r.label+" died", "path", r.path, "pid", r.proc.pid, "lived", lived.Round(time.Millisecond))
		r.proc = nil
		if lived > stableAfter {
			r.backoff = minBackoff
		}
	}
	if next := r.started.Add(r.backoff); now.Before(next) {
		return nil, fmt.Errorf("%s %s: down, next start in %s", r.label, r.path, next.Sub(now).Round(time.Millisecond))
	}
	r.started = now
	// Whatever happens to this start, the next one waits longer unless the
	// process lives stableAfter.
	wait := r.backoff
	r.backoff = min(2*r.backoff, maxBackoff)
	p, err := start(r.path, r.kind, r.log)
	if err != nil {
		r.log.Error(r.label+" restart failed", "path", r.path, "err", err, "next_in", r.backoff)
		return nil, err
	}
	if r.restarts != nil {
		r.restarts.Inc()
	}
	r.log.Warn(r.label+" restarted", "path", r.path, "pid", p.pid, "after", wait)
	r.proc = p
	return p, nil
}

// close stops the process for good.
func (r *respawner) close() {
	r.mu.Lock()
	p := r.proc
	r.proc, r.closed = nil, true
	r.mu.Unlock()
	if p != nil {
		p.kill()
	}
}
