// Package authhook asks an operator's HTTP service whether a publisher or a
// viewer may come in (auth_url), for rtmp-source, httpflv-sink and hls-sink.
//
// Before admitting, a stage POSTs JSON (Request) to auth_url: a 2xx answer
// admits, anything else refuses; a call that fails or outlasts auth_timeout
// refuses unless auth_fail_open. Answers are kept per (action, stream,
// query): admits for AdmitTTL, refusals and failures for RefuseTTL; while a
// call is in flight, every client asking the same question waits for it, so
// a crowd joining at once makes one call per distinct question.
package authhook

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediapipe/mediapipe/core"
)

// How long answers are kept, and the bounds of what a stranger can cause.
const (
	// AdmitTTL is how long an admit is reused for the same question.
	AdmitTTL = 10 * time.Second
	// RefuseTTL is how long a refusal (or a failed call) is reused: short,
	// so a viewer let in by the operator's service a moment later is not
	// kept out long.
	RefuseTTL = 2 * time.Second
	// StaleGrace is how long past its expiry an admit still holds while
	// the hook cannot be reached (calls failing or timing out): clients
	// it admitted keep playing through a short outage of the operator's
	// service; new questions are refused (or admitted with fail-open).
	StaleGrace = time.Minute
	// MaxEntries bounds the answers kept per stage.
	MaxEntries = 4096
	// MaxCalls bounds the calls to the hook in flight at once per stage; a
	// question beyond it waits for a slot within auth_timeout.
	MaxCalls = 32
	// maxBody bounds what is read of an answer's body (it is discarded;
	// reading lets the connection be reused).
	maxBody = 64 << 10
	// maxRedirects bounds the redirects followed, to the same host only.
	maxRedirects = 3
	// logEvery spaces the refusal lines: a flood of refusals costs one
	// line per interval, the rest counted in the next line.
	logEvery = 100 * time.Millisecond
)

// Actions and protocols.
const (
	Publish = "publish"
	Play    = "play"

	RTMP    = "rtmp"
	HTTPFLV = "http-flv"
	HLS     = "hls"
)

// Results, each a counter auth_RESULT of the stage
// (mediapipe_stage_auth_decisions_total{result="admit"}, ...).
const (
	ResultAdmit         = "admit"          // the hook answered 2xx
	ResultRefuse        = "refuse"         // the hook answered something else
	ResultErrorRefused  = "error_refused"  // the call failed or timed out: refused
	ResultErrorAdmitted = "error_admitted" // the call failed or timed out: admitted (auth_fail_open)
)

var results = []string{ResultAdmit, ResultRefuse, ResultErrorRefused, ResultErrorAdmitted}

// Config is a stage's auth_url, auth_timeout and auth_fail_open.
type Config struct {
	URL      string
	Timeout  time.Duration
	FailOpen bool
}

// ValidateURL says why u is not an http or https URL with a host ("" is
// fine: no hook).
func ValidateURL(u string) error {
	if u == "" {
		return nil
	}
	p, err := url.Parse(u)
	if err != nil {
		return fmt.Errorf("auth_url: %w", err)
	}
	if p.Scheme != "http" && p.Scheme != "https" {
		return fmt.Errorf("auth_url %q: must be an http:// or https:// URL", redact(p))
	}
	if p.Host == "" {
		return fmt.Errorf("auth_url %q: has no host", redact(p))
	}
	return nil
}

// redact is u without its userinfo and query (they may hold a token).
func redact(u *url.URL) string {
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}

// Request is the JSON body POSTed to auth_url.
type Request struct {
	Action   string            `json:"action"`   // "publish" or "play"
	Protocol string            `json:"protocol"` // "rtmp", "http-flv" or "hls"
	Stream   string            `json:"stream"`   // APP/KEY
	Query    map[string]string `json:"query"`    // the URL's (rtmp: the stream name's) query, first value per key
	Client   string            `json:"client"`   // IP:PORT
	Pipeline string            `json:"pipeline"`
	Stage    string            `json:"stage"`
}

// Decision is the answer to one client.
type Decision struct {
	Admit bool
	// Status is what an HTTP viewer is answered when refused: 401 or 403
	// as the hook answered, 403 otherwise.
	Status int
	Result string // one of the Result constants
}

// settings is what a reload swaps at once.
type settings struct {
	cfg    Config
	client *http.Client
}

// Hook is one stage's auth hook. Its methods are safe for concurrent use.
type Hook struct {
	protocol, pipeline, stage string
	log                       *slog.Logger
	now                       func() time.Time

	set   atomic.Pointer[settings]
	cache *cache
	slots chan struct{} // MaxCalls

	ctx    context.Context // ends at Close: calls in flight give up
	cancel context.CancelFunc

	count   map[string]prometheus.Counter // by result
	mCalls  prometheus.Counter
	mCached prometheus.Counter

	logMu      sync.Mutex
	lastLog    time.Time
	suppressed int
}

// New makes the hook of the stage env describes, speaking for protocol. It
// does nothing (Check admits) while cfg.URL is empty.
func New(env *core.Env, protocol string, cfg Config) *Hook {
	ctx, cancel := context.WithCancel(context.Background())
	h := &Hook{
		protocol: protocol, pipeline: env.Pipeline, stage: env.Name,
		log: env.Log, now: time.Now,
		cache:   newCache(MaxEntries, nil),
		slots:   make(chan struct{}, MaxCalls),
		ctx:     ctx,
		cancel:  cancel,
		count:   map[string]prometheus.Counter{},
		mCalls:  env.Metrics.Counter("auth_calls"),
		mCached: env.Metrics.Counter("auth_cached"),
	}
	for _, r := range results {
		h.count[r] = env.Metrics.Counter("auth_" + r)
	}
	h.set.Store(newSettings(cfg))
	return h
}

func newSettings(cfg Config) *settings {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	tr := &http.Transport{
		// The hook is the operator's own service: no proxy from the
		// environment, a few kept connections.
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   cfg.Timeout,
		ResponseHeaderTimeout: cfg.Timeout,
		MaxIdleConns:          MaxCalls,
		MaxIdleConnsPerHost:   MaxCalls,
		MaxConnsPerHost:       MaxCalls,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &settings{cfg: cfg, client: &http.Client{
		Transport:     tr,
		Timeout:       cfg.Timeout,
		CheckRedirect: sameHost,
	}}
}

// sameHost follows a few redirects to the hook's own host; a redirect
// elsewhere is not followed, so its 3xx is the answer (a refusal).
func sameHost(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects || req.URL.Scheme != via[0].URL.Scheme || req.URL.Host != via[0].URL.Host {
		return http.ErrUseLastResponse
	}
	return nil
}

// Enabled reports whether an auth_url is set.
func (h *Hook) Enabled() bool { return h.set.Load().cfg.URL != "" }

// Reconfigure applies a reload's auth_url, auth_timeout and auth_fail_open
// to the questions asked from now on, forgetting the kept answers when any
// of them changed.
func (h *Hook) Reconfigure(cfg Config) {
	old := h.set.Load()
	if cfg == old.cfg {
		return
	}
	h.set.Store(newSettings(cfg))
	h.cache.clear()
	old.client.CloseIdleConnections()
}

// Forget drops the answers kept for stream, so its next client asks the
// hook again: a client the control API kicked is not let back in by an
// answer given before.
func (h *Hook) Forget(stream string) {
	if h == nil {
		return
	}
	h.cache.forget(sha256.Sum256([]byte(stream)))
}

// Close ends the calls in flight and closes the kept connections; the
// stage calls it once it admits no one any more.
func (h *Hook) Close() {
	h.cancel()
	h.set.Load().client.CloseIdleConnections()
}

// Values turns a URL query into the hook's query map (first value per
// key), leaving out the keys skip says (nil: none).
func Values(q url.Values, skip func(key string) bool) map[string]string {
	m := make(map[string]string, len(q))
	for k, v := range q {
		if len(v) == 0 || skip != nil && skip(k) {
			continue
		}
		m[k] = v[0]
	}
	return m
}

// Check asks whether client may do action on stream with query, from the
// kept answers or the hook. ok is false when ctx ended before an answer
// (the client left): nothing was decided for it. With no auth_url it admits.
func (h *Hook) Check(ctx context.Context, action, stream string, query map[string]string, client string) (d Decision, ok bool) {
	set := h.set.Load()
	if set.cfg.URL == "" {
		return Decision{Admit: true, Status: http.StatusOK, Result: ResultAdmit}, true
	}
	if query == nil {
		query = map[string]string{} // {} in the body, not null
	}
	e, leader := h.cache.claim(cacheKey(action, stream, query), sha256.Sum256([]byte(stream)))
	if leader {
		d = h.call(set, Request{
			Action: action, Protocol: h.protocol, Stream: stream, Query: query,
			Client: client, Pipeline: h.pipeline, Stage: h.stage,
		})
		ttl := AdmitTTL
		if d.Result != ResultAdmit {
			ttl = RefuseTTL
		}
		d = h.cache.finish(e, d, ttl)
	} else if sd, ok := h.cache.staleAdmit(e); ok {
		d = sd // admitted before; its renewal is in flight
		h.mCached.Inc()
	} else {
		if d, ok = e.wait(ctx); !ok {
			return d, false
		}
		h.mCached.Inc()
	}
	h.count[d.Result].Inc()
	if !d.Admit && !(leader && d.Result == ResultErrorRefused) { // a failed call logged its own line
		h.logRefusal(action, stream, query, client, d)
	}
	return d, true
}

// cacheKey digests (action, stream, query) unambiguously: each part is
// length-prefixed, the query in key order.
func cacheKey(action, stream string, query map[string]string) [sha256.Size]byte {
	keys := make([]string, 0, len(query))
	for k := range query {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var scratch [512]byte
	buf := scratch[:0]
	put := func(s string) {
		buf = binary.AppendUvarint(buf, uint64(len(s)))
		buf = append(buf, s...)
	}
	put(action)
	put(stream)
	for _, k := range keys {
		put(k)
		put(query[k])
	}
	return sha256.Sum256(buf)
}

// call asks the hook once, within auth_timeout (a wait for a call slot
// included).
func (h *Hook) call(set *settings, req Request) Decision {
	ctx, cancel := context.WithTimeout(h.ctx, set.cfg.Timeout)
	defer cancel()
	status, err := h.post(ctx, set, req)
	switch {
	case err != nil:
		if set.cfg.FailOpen {
			h.logFailure(req, err, true)
			return Decision{Admit: true, Status: http.StatusOK, Result: ResultErrorAdmitted}
		}
		h.logFailure(req, err, false)
		return Decision{Status: http.StatusForbidden, Result: ResultErrorRefused}
	case status >= 200 && status < 300:
		return Decision{Admit: true, Status: http.StatusOK, Result: ResultAdmit}
	case status == http.StatusUnauthorized:
		return Decision{Status: http.StatusUnauthorized, Result: ResultRefuse}
	}
	return Decision{Status: http.StatusForbidden, Result: ResultRefuse}
}

func (h *Hook) post(ctx context.Context, set *settings, req Request) (int, error) {
	select {
	case h.slots <- struct{}{}:
		defer func() { <-h.slots }()
	case <-ctx.Done():
		return 0, fmt.Errorf("waiting for one of %d call slots: %w", MaxCalls, ctx.Err())
	}
	body, err := json.Marshal(req)
	if err != nil {
		return 0, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, set.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("User-Agent", "mediapipe-auth")
	h.mCalls.Inc()
	resp, err := set.client.Do(hr)
	if err != nil {
		// url.Error quotes the URL, which may carry a token: keep the cause only.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// logRefusal writes one info line per logEvery at most; the query's keys
// only, never its values (a key's value may be a secret).
func (h *Hook) logRefusal(action, stream string, query map[string]string, client string, d Decision) {
	n, ok := h.mayLog()
	if !ok {
		return
	}
	h.log.Info("auth refused", "action", action, "protocol", h.protocol, "stream", core.Clip(stream),
		"client", client, "query_keys", queryKeys(query), "result", d.Result, "status", d.Status, "suppressed", n)
}

func (h *Hook) logFailure(req Request, err error, admitted bool) {
	n, ok := h.mayLog()
	if !ok {
		return
	}
	msg := "auth hook failed: refused"
	if admitted {
		msg = "auth hook failed: admitted (auth_fail_open)"
	}
	h.log.Warn(msg, "action", req.Action, "protocol", h.protocol, "stream", core.Clip(req.Stream),
		"client", req.Client, "err", core.Clip(err.Error()), "suppressed", n)
}

// mayLog claims the log slot if the last line is logEvery old, returning
// how many lines were left out since; otherwise it counts one more.
func (h *Hook) mayLog() (suppressed int, ok bool) {
	h.logMu.Lock()
	defer h.logMu.Unlock()
	now := h.now()
	if now.Sub(h.lastLog) < logEvery {
		h.suppressed++
		return 0, false
	}
	h.lastLog, suppressed, h.suppressed = now, h.suppressed, 0
	return suppressed, true
}

func queryKeys(q map[string]string) string {
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return core.Clip(strings.Join(keys, ","))
}

// Admit asks whether the HTTP viewer r may play stream (its URL's query,
// less the keys skip says) and answers a refusal itself: 401 or 403 as the
// hook answered, 403 for any other refusal. It reports whether r is
// admitted; false also when r's client left while waiting.
func (h *Hook) Admit(w http.ResponseWriter, r *http.Request, stream string, skip func(key string) bool) bool {
	if !h.Enabled() {
		return true
	}
	d, ok := h.Check(r.Context(), Play, stream, Values(r.URL.Query(), skip), r.RemoteAddr)
	switch {
	case !ok:
		return false
	case !d.Admit:
		http.Error(w, "refused by the auth hook", d.Status)
		return false
	}
	return true
}
