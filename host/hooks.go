package host

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediapipe/mediapipe/core"
)

// HookConfig is one [[hook]] table: where to POST which notices.
type HookConfig struct {
	Index  int      // 1-based position among the file's hooks
	URL    string   `param:"url" required:"true" doc:"http:// or https:// URL each event is POSTed to, as JSON"`
	Events []string `param:"events" required:"true" doc:"the events sent: any of publish, unpublish, play, stop, record_done, stream_start, stream_end"`
	Secret string   `param:"secret" secret:"true" doc:"when set, each request carries X-Mediapipe-Signature: the hex HMAC-SHA256 of the body with this key"`
	Queue  int      `param:"queue" default:"1024" min:"1" max:"65536" doc:"events waiting for delivery at most; past it new events are dropped and counted"`
}

// Validate refuses a URL that is not absolute http(s) and unknown or
// repeated event names.
func (c *HookConfig) Validate() error {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New(`url: must be an http:// or https:// URL such as "http://127.0.0.1:8080/events"`)
	}
	if len(c.Events) == 0 {
		return fmt.Errorf("events: must name at least one of %s", strings.Join(core.NoticeNames, ", "))
	}
	seen := map[string]bool{}
	for _, e := range c.Events {
		if !slices.Contains(core.NoticeNames, e) {
			return fmt.Errorf("events: %q is not an event (take any of %s)", core.Clip(e), strings.Join(core.NoticeNames, ", "))
		}
		if seen[e] {
			return fmt.Errorf("events: %q is given twice", e)
		}
		seen[e] = true
	}
	return nil
}

var hookTable = fileTable{
	spec: core.Spec{Name: "[[hook]]", Params: core.ParamsOf(HookConfig{}),
		Summary: "Optional, any number. Events (publishers and viewers coming and going, streams starting and ending, recordings closed) are POSTed as JSON to url, in order, by one queue and one sender per hook: retried with back-off when the receiver fails, dropped and counted (mediapipe_hook_events_total) when its queue is full, never slowing media. Applied on reload."},
	takes:   "a hook takes %s",
	missing: "required in a [[hook]]",
}

// hooks parses the [[hook]] array, MEDIAPIPE_HOOK_<N>_<KEY> laid over it.
func (ps *problems) hooks(raw any, env map[string]string) []*HookConfig {
	if raw == nil {
		return nil
	}
	list, ok := raw.([]any)
	if !ok {
		ps.fileLevel(0, "hook: must be an array of tables ([[hook]])")
		return nil
	}
	var out []*HookConfig
	for i, rh := range list {
		hc := &HookConfig{Index: i + 1}
		t, ok := rh.(map[string]any)
		if !ok {
			ps.fileLevel(0, "hook %d: must be a table", i+1)
			continue
		}
		// MEDIAPIPE_HOOK_<N>_<KEY> overrides key of the Nth [[hook]]: a
		// secret or a URL with a token need not be in the file.
		for _, p := range hookTable.spec.Params {
			ek := fmt.Sprintf("HOOK_%d_%s", i+1, envName(p.Name))
			if v, ok := env[ek]; ok {
				t[p.Name] = core.EnvString(v)
				delete(env, ek)
			}
		}
		for _, msg := range hookTable.decode(t, hc) {
			ps.fileLevel(0, "hook %d: %s", i+1, msg)
		}
		out = append(out, hc)
	}
	return out
}

// Hook delivery bounds.
const (
	hookAttempts    = 6                      // tries per event: 0.5+1+2+4+8 s of back-off between them
	hookFirstDelay  = 500 * time.Millisecond // back-off before the second try, doubled each time
	hookTimeout     = 5 * time.Second        // one request
	hookDrain       = 3 * time.Second        // at shutdown, for what is queued and in flight
	hookDropLogEach = 5 * time.Second        // at most one "dropped" line per hook this often
)

// hookSet is the running [[hook]]s of one file version.
type hookSet struct {
	cfgs        []*HookConfig
	senders     []*hookSender
	unsubscribe func()
}

// hookSender delivers one hook's events, in order, from its bounded queue.
type hookSender struct {
	cfg    *HookConfig
	wants  map[string]bool
	q      chan []byte
	client *http.Client
	log    *slog.Logger

	stopping chan struct{}      // closed: deliver what is queued, then return
	ctx      context.Context    // cancelled when the drain time is over
	cancel   context.CancelFunc // …
	done     chan struct{}

	delivered, failed, dropped prometheus.Counter
	lastDropLog                atomic.Int64
}

// hookFamily is the family of the hooks' counters (listed in docs/metrics.md).
var hookFamily = core.Family{
	Name: "mediapipe_hook_events_total", Type: "counter", Labels: []string{"hook", "result"},
	Help: "Events of each [[hook]] (by position in the file), by result: delivered (2xx), failed (given up after retries), dropped (queue full, or not delivered within the shutdown drain).",
}

func init() { core.RegisterFamily(hookFamily) }

// hookCounters is mediapipe_hook_events_total in m's registry, registered
// by the first runtime that needs it: the label values are the hooks'
// positions in the file, so the series stay bounded.
func hookCounters(m *core.Metrics) *prometheus.CounterVec {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{Name: hookFamily.Name, Help: hookFamily.Help}, hookFamily.Labels)
	if err := m.Registry.Register(vec); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if v, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return v
			}
		}
		// Another family has the name (a programming error): count
		// unexported rather than stop the process.
	}
	return vec
}

// startHooks starts a sender per hook and subscribes them to bus.
func startHooks(cfgs []*HookConfig, bus *core.Bus, m *core.Metrics, log *slog.Logger) *hookSet {
	hs := &hookSet{cfgs: cfgs}
	if len(cfgs) == 0 {
		return hs
	}
	vec := hookCounters(m)
	for _, c := range cfgs {
		label := strconv.Itoa(c.Index)
		s := &hookSender{
			cfg: c, wants: map[string]bool{}, q: make(chan []byte, c.Queue),
			// No proxy from the environment: the receiver is the
			// operator's own service, as auth_url's is.
			client:   &http.Client{Timeout: hookTimeout, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 2, IdleConnTimeout: time.Minute}},
			log:      log.With("hook", c.Index, "url", redactURL(c.URL)),
			stopping: make(chan struct{}), done: make(chan struct{}),
			delivered: vec.WithLabelValues(label, "delivered"),
			failed:    vec.WithLabelValues(label, "failed"),
			dropped:   vec.WithLabelValues(label, "dropped"),
		}
		for _, e := range c.Events {
			s.wants[e] = true
		}
		s.ctx, s.cancel = context.WithCancel(context.Background())
		hs.senders = append(hs.senders, s)
		go s.run()
	}
	hs.unsubscribe = bus.Subscribe(hs.offer)
	return hs
}

// unwrapURLError drops the URL net/http quotes in its errors (its query may
// carry a secret; the logger names the redacted URL already).
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

// redactURL drops the URL's user info and query, which may carry secrets.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

// offer queues n for every hook that wants it, without ever waiting: it
// runs on the goroutine of whoever published (a source accepting a
// publisher, a sink a viewer).
func (hs *hookSet) offer(n core.Notice) {
	var body []byte
	for _, s := range hs.senders {
		if !s.wants[n.Name] {
			continue
		}
		if body == nil {
			var err error
			if body, err = json.Marshal(n); err != nil {
				return
			}
		}
		select {
		case s.q <- body:
		default:
			s.drop(1, "queue full")
		}
	}
}

func (s *hookSender) drop(n int, why string) {
	s.dropped.Add(float64(n))
	now := time.Now().UnixNano()
	last := s.lastDropLog.Load()
	if now-last >= int64(hookDropLogEach) && s.lastDropLog.CompareAndSwap(last, now) {
		s.log.Warn("hook events dropped", "reason", why, "count", n)
	}
}

func (s *hookSender) run() {
	defer close(s.done)
	defer s.client.CloseIdleConnections() // its own transport: nothing outlives the hook
	for {
		select {
		case body := <-s.q:
			s.deliver(body)
		case <-s.stopping:
			for {
				select {
				case body := <-s.q:
					s.deliver(body)
				default:
					return
				}
			}
		}
	}
}

// deliver POSTs body until a 2xx answer, at most hookAttempts times with
// doubling back-off; once the drain time is over it counts body dropped.
func (s *hookSender) deliver(body []byte) {
	delay := hookFirstDelay
	for attempt := 1; ; attempt++ {
		if s.ctx.Err() != nil {
			s.drop(1, "shutdown")
			return
		}
		err := unwrapURLError(s.post(body))
		if err == nil {
			s.delivered.Inc()
			return
		}
		if s.ctx.Err() != nil {
			s.drop(1, "shutdown")
			return
		}
		if attempt == hookAttempts {
			s.failed.Inc()
			s.log.Warn("hook event not delivered", "attempts", attempt, "err", err)
			return
		}
		s.log.Debug("hook delivery failed, retrying", "attempt", attempt, "in", delay, "err", err)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
		}
		delay *= 2
	}
}

func (s *hookSender) post(body []byte) error {
	req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, s.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "mediapipe")
	if s.cfg.Secret != "" {
		req.Header.Set("X-Mediapipe-Signature", Sign(s.cfg.Secret, body))
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // keep the connection reusable
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("answered %s", resp.Status)
	}
	return nil
}

// Sign is the X-Mediapipe-Signature of body under secret: the hex
// HMAC-SHA256, as a receiver recomputes it.
func Sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// stopTaking unsubscribes the hooks from the bus (once).
func (hs *hookSet) stopTaking() {
	if hs != nil && hs.unsubscribe != nil {
		hs.unsubscribe()
		hs.unsubscribe = nil
	}
}

// close stops taking events and gives the queued and in-flight ones up to
// drain to be delivered; the rest are counted dropped. It returns when
// every sender has ended.
func (hs *hookSet) close(drain time.Duration) {
	if hs == nil {
		return
	}
	hs.stopTaking()
	for _, s := range hs.senders {
		close(s.stopping)
	}
	timer := time.NewTimer(drain)
	defer timer.Stop()
	for _, s := range hs.senders {
		select {
		case <-s.done:
		case <-timer.C:
			for _, s := range hs.senders {
				s.cancel()
			}
			<-s.done
		}
	}
	for _, s := range hs.senders {
		s.cancel()
		<-s.done
	}
}

// reloadHooks replaces the running hooks when the [[hook]] tables changed;
// the old ones finish their queues in the background.
func (rt *Runtime) reloadHooks(next []*HookConfig) {
	var cur []*HookConfig
	if rt.hooks != nil {
		cur = rt.hooks.cfgs
	}
	if reflect.DeepEqual(cur, next) {
		return
	}
	prev := rt.hooks
	// From now on new events go to the new hooks only; the old ones
	// deliver what they hold in the background.
	prev.stopTaking()
	rt.hooks = startHooks(next, rt.Events, rt.Metrics, rt.log)
	go prev.close(hookDrain)
}
