// Package httpflvsink is the httpflv-sink stage: it serves each stream as
// HTTP-FLV (GET /APP/KEY.flv) to any number of viewers, sharing tag bytes between them.
package httpflvsink

import (
	"context"
	"crypto/tls"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/internal/polltimer"
	"github.com/mediapipe/mediapipe/stages/internal/authhook"
	"github.com/mediapipe/mediapipe/stages/internal/certfile"
	"github.com/mediapipe/mediapipe/stages/internal/playerpage"
	"github.com/mediapipe/mediapipe/stages/internal/streaminfo"
	"github.com/mediapipe/mediapipe/stages/internal/tcplisten"
	"github.com/mediapipe/mediapipe/stages/internal/viewerhttp"
)

// Config is httpflv-sink's parameters.
type Config struct {
	Listen string `param:"listen" required:"true" addr:"true" doc:"HTTP address to serve on; streams are at http://ADDR/APP/KEY.flv"`
	// HTTPS: a page served over HTTPS cannot play an http:// stream.
	Cert         string        `param:"cert" doc:"PEM certificate file (chain first to last) to serve HTTPS instead of HTTP, with key; relative to the pipeline file's directory. Streams are then at https://ADDR/APP/KEY.flv (HTTP/1.1 by ALPN); a plain-HTTP request gets 400. A renewed certificate written over the files is served to new viewers within a second, without a restart (viewers playing keep their connection)"`
	Key          string        `param:"key" doc:"PEM private key file of cert; relative to the pipeline file's directory"`
	PlayKey      string        `param:"play_key" secret:"true" live:"true" doc:"when set, a viewer must add ?key=SECRET to the URL (401 without, 403 when wrong). On a reload, a new key admits new viewers with it and refuses the old one from then on; viewers already playing keep playing"`
	ViewerQueue  int           `param:"viewer_queue" default:"1024" min:"16" max:"1000000" doc:"tags queued per viewer; a viewer that falls this far behind is disconnected (slow_viewer)"`
	GOPCache     bool          `param:"gop_cache" default:"true" doc:"send a new viewer the tags since the last keyframe, so its first frame comes at once"`
	GOPMaxBytes  int           `param:"gop_max_bytes" default:"33554432" min:"65536" doc:"a GOP larger than this is not cached (viewers then start at the next keyframe)"`
	MaxViewers   int           `param:"max_viewers" default:"0" min:"0" live:"true" doc:"most viewers at once over all streams (503 beyond); 0 means no limit. On a reload, lowering it refuses new viewers until fewer than the new limit are connected, cutting none; raising it admits more at once"`
	WriteTimeout time.Duration `param:"write_timeout" default:"10s" min:"0.1" doc:"a viewer whose socket accepts nothing for this long, or that has more than this much of the stream (at its measured rate) sent or queued but not acknowledged, is disconnected (slow_viewer); also the most a viewer is given to take what is queued when its stream ends. Each viewer's socket send buffer is one second of its stream, 64 KiB to 1 MiB (and net.core.wmem_max), so a viewer that stops reading is shed write_timeout after its send buffer fills (a second or two) and pins at most twice its send buffer in the kernel"`
	// Coalescing: tags queue per viewer and go out in one writev per flush,
	// so a viewer costs a syscall per burst, not per tag.
	FlushInterval time.Duration `param:"flush_interval" default:"25ms" min:"0" max:"1" doc:"the longest a tag waits before it is written to viewers. A stream with fewer than 128 viewers is written at every burst of tags (a frame and its audio) as soon as it has arrived, unless its last write was too recent (a share of flush_interval that grows with the audience). From 128 viewers, where the writes are most of what a stream costs, a burst is held for the stream's next one while that is due within flush_interval, so one write per viewer carries two bursts or more. 0 sends each tag at once (lowest latency, most CPU per viewer)"`
	TCPNoDelay    bool          `param:"tcp_nodelay" default:"false" doc:"send each write to a viewer as its own TCP segment at once (TCP_NODELAY). Off (the default, as in nginx-rtmp and SRS), a write while the viewer has not acknowledged the last one waits in the kernel for its ACK and goes out with what follows: less CPU per viewer, and no delay for a player that reads as data comes; over a long round trip the tail of a frame may wait up to one round trip"`
	FlushBytes    int           `param:"flush_bytes" default:"32768" min:"1024" max:"16777216" doc:"a stream that has queued this many bytes since the last flush is flushed at once (keyframes do not wait for flush_interval)"`
	Page          bool          `param:"page" default:"true" doc:"serve player pages on the same address: / lists the live streams (codec, size, bitrate, viewers, uptime) and updates itself, /APP/KEY plays a stream in the browser (mpegts.js, embedded in the binary) with a live-latency readout; with play_key set the pages ask for the key too. false: every URL that is not a stream is 404"`
	AuthURL       string        `param:"auth_url" live:"true" doc:"when set (an http:// or https:// URL), a viewer that passed play_key is served only if a POST of JSON {\"action\":\"play\",\"protocol\":\"http-flv\",\"stream\":\"APP/KEY\",\"query\":{the URL's query},\"client\":\"IP:PORT\",\"pipeline\",\"stage\"} here is answered 2xx; otherwise it gets 401 or 403 as the hook answered (403 for anything else). Answers are reused per (action, stream, query): admits for 10 s, refusals and failures for 2 s; one call at a time per question, so a crowd joining makes one call. See docs/hooks.md"`
	AuthTimeout   time.Duration `param:"auth_timeout" default:"2s" min:"0.01" max:"60" live:"true" doc:"the most an auth_url call may take (connect, answer and a wait for one of 32 call slots included); a call that fails or takes longer refuses, unless auth_fail_open"`
	AuthFailOpen  bool          `param:"auth_fail_open" default:"false" live:"true" doc:"admit when the auth_url call fails or times out (counted as auth_error_admitted) instead of refusing (auth_error_refused)"`
}

func (c *Config) auth() authhook.Config {
	return authhook.Config{URL: c.AuthURL, Timeout: c.AuthTimeout, FailOpen: c.AuthFailOpen}
}

// Validate checks that cert and key come together, and an absolute pair (a
// relative one needs the pipeline file's directory: ValidateIn).
func (c *Config) Validate() error {
	if err := authhook.ValidateURL(c.AuthURL); err != nil {
		return err
	}
	if (c.Cert == "") != (c.Key == "") {
		return errors.New("cert and key: give both to serve HTTPS, or neither")
	}
	if filepath.IsAbs(c.Cert) && filepath.IsAbs(c.Key) {
		return checkPair(c.Cert, c.Key)
	}
	return nil
}

// ValidateIn implements core.DirValidator: relative cert and key, like every
// path in the file, start at the pipeline file's directory.
func (c *Config) ValidateIn(dir string) error {
	if filepath.IsAbs(c.Cert) && filepath.IsAbs(c.Key) {
		return nil // Validate checked them
	}
	return checkPair(core.InDir(dir, c.Cert), core.InDir(dir, c.Key))
}

// checkPair says why cert and key are no certificate and its key; none at all is fine.
func checkPair(cert, key string) error {
	if cert == "" && key == "" {
		return nil
	}
	if _, err := certfile.Load(cert, key, nil); err != nil {
		return fmt.Errorf("cert and key: %w", err)
	}
	return nil
}

// sample is an example [[pipeline.stage]] block for this stage, carried in
// its spec; stages/all checks that it validates.
//
//go:embed sample.toml
var sample string

func init() {
	core.Register(core.Spec{
		Name:    "httpflv-sink",
		Summary: "serves GET /APP/KEY.flv to any number of viewers: FLV header, metadata, sequence headers, the cached current GOP, then live; a slow viewer is dropped",
		In:      core.KindFLV,
		Out:     core.KindNone,
		Sample:  sample,
	}, New)
}

// Stage is a running httpflv-sink.
type Stage struct {
	cfg Config
	env *core.Env
	// the stage's Open and Addr
	tcplisten.Listener
	srv *http.Server
	// page serves what is not a stream URL; nil when page = false.
	page *playerpage.Handler
	tls  *tls.Config // nil: plain HTTP

	// playKey and maxViewers start as cfg's; a reload changes them
	// (Reconfigure) while viewers are served.
	playKey    atomic.Pointer[string]
	maxViewers atomic.Int64
	auth       *authhook.Hook // auth_url; live too

	mu      sync.RWMutex
	byName  map[string]*stream
	viewers int // over all streams
	closing bool
	vwg     sync.WaitGroup // viewer goroutines

	streams map[*core.Stream]*stream // Run's own view
	live    map[*stream]struct{}     // under mu: streams the flusher serves

	dirty      []*stream     // Run's own: streams with tags queued since their last flush
	checkEvery time.Duration // how often a viewer's send queue is read

	mViewers  prometheus.Gauge
	mServed   prometheus.Counter
	mBytes    prometheus.Counter
	mSlow     *core.DropCounter // shed: queue full or write_timeout
	mGone     *core.DropCounter // hung up: its queued tags are lost
	mRejected *core.DropCounter
	mBadTag   *core.DropCounter
	mKeys     prometheus.Counter
}

// New builds an httpflv-sink.
func New(cfg *Config, env *core.Env) (core.Stage, error) {
	s := &Stage{
		cfg:        *cfg,
		env:        env,
		Listener:   tcplisten.New("httpflv-sink", cfg.Listen),
		byName:     map[string]*stream{},
		streams:    map[*core.Stream]*stream{},
		live:       map[*stream]struct{}{},
		checkEvery: checkEvery(cfg.WriteTimeout),
		mKeys:      env.Metrics.Counter("keyframes"),
		mViewers:   env.Metrics.Gauge("viewers"),
		mServed:    env.Metrics.Counter("viewers_served"),
		mBytes:     env.Metrics.Counter("bytes_sent"),
		mSlow:      env.Metrics.Drop("slow_viewer"),
		mGone:      env.Metrics.Drop("viewer_gone"),
		mRejected:  env.Metrics.Drop("viewer_rejected"),
		mBadTag:    env.Metrics.Drop("bad_tag"),
	}
	s.playKey.Store(&s.cfg.PlayKey)
	s.maxViewers.Store(int64(cfg.MaxViewers))
	s.auth = authhook.New(env, authhook.HTTPFLV, cfg.auth())
	if cfg.Page {
		s.page = playerpage.New(playerpage.Options{
			Protocol: playerpage.FLV,
			Streams:  s.streamInfos,
			PlayKey:  func() string { return *s.playKey.Load() },
			Log:      env.Log,
		})
	}
	s.srv = &http.Server{
		Handler:           http.HandlerFunc(s.serveHTTP),
		ReadHeaderTimeout: 10 * time.Second, // also bounds the TLS handshake
		MaxHeaderBytes:    16 << 10,
		// What a stranger can cause (a failed handshake, a plain request
		// to the HTTPS port) is logged at debug level only.
		ErrorLog: slog.NewLogLogger(env.Log.Handler(), slog.LevelDebug),
	}
	if cfg.Cert != "" || cfg.Key != "" {
		certs, err := certfile.Load(env.Path(cfg.Cert), env.Path(cfg.Key), env.Log)
		if err != nil {
			return nil, fmt.Errorf("httpflv-sink: cert and key: %w", err)
		}
		// HTTP/1.1 only: a viewer's connection is hijacked, which HTTP/2 has not.
		s.tls = certs.TLSConfig("http/1.1")
	}
	return s, nil
}

// Run fans tags out until in closes; ctx only stops the HTTP server early.
func (s *Stage) Run(ctx context.Context, in <-chan *core.Packet, _ core.Output) error {
	ln, err := s.Listen(ctx)
	if err != nil {
		return err
	}
	scheme := "http"
	if s.tls != nil {
		ln, scheme = tls.NewListener(ln, s.tls), "https"
	}
	stop := viewerhttp.Serve(ctx, "httpflv-sink", s.env.Log, func() error { return s.srv.Serve(ln) }, s.shutdown)
	s.env.Log.Info("httpflv-sink listening", "addr", ln.Addr().String(), "scheme", scheme)

	s.serve(in)
	for st := range s.streams {
		s.end(st)
	}
	stop()
	// Viewers end by themselves: each stream's end gave them write_timeout
	// at most to take what was queued.
	s.vwg.Wait()
	s.auth.Close()
	return nil
}

// serve takes tags from in until it closes, and flushes them to viewers on
// this goroutine, when in runs dry (the end of a burst: a frame's tags
// arrive together) or on a timer, as flushDue decides; at once when a
// stream has queued flush_bytes. No tag waits longer than flush_interval,
// streams do not wait for each other, an idle stage does not wake, and a
// burst costs no hand-off to another goroutine.
func (s *Stage) serve(in <-chan *core.Packet) {
	f := newFlusher(s)
	defer f.close()
	// The poller's timer, not a time.Timer: a flush deadline wakes the
	// process once and on time, and not the runtime's sysmon thread
	// (internal/polltimer).
	timer, err := polltimer.New()
	if err != nil {
		s.env.Log.Info("httpflv-sink: flush deadlines on a Go timer", "err", err)
	}
	defer timer.Close()
	var armed time.Time // when the timer fires; zero: not armed
	for {
		select {
		case p, ok := <-in:
			if !ok {
				return
			}
			switch p.Event {
			case core.EventStart:
				s.start(p.Stream)
				p.Release()
			case core.EventEnd:
				s.end(p.Stream)
				p.Release()
			default:
				s.data(p)
			}
		case <-timer.C:
			armed = time.Time{}
		}
		if len(s.dirty) == 0 && armed.IsZero() {
			continue
		}
		now := time.Now()
		busy := len(in) > 0
		var next time.Time
		if len(s.dirty) > 0 {
			next = f.flushDue(now, busy)
		}
		// The timer is armed for exactly the next deadline, and disarmed
		// when there is none: a held burst is mostly flushed when the
		// next one comes, and a timer left for its deadline then woke
		// the process for nothing (18 of 30 timer wake-ups a second at
		// 1 stream x 200 viewers). A system call to disarm costs far less
		// than a wake-up. Busy: the next packet is waiting and flushDue
		// runs again for it at once.
		switch {
		case busy || next.Equal(armed):
		case next.IsZero():
			timer.Stop()
			armed = time.Time{}
		default:
			timer.Reset(next.Sub(now))
			armed = next
		}
	}
}

// flushDue flushes the streams with tags queued whose turn it is, and
// returns when the next of the others is due (zero: none left). busy: more
// input is waiting, so a stream's burst may not be complete yet.
//
// No tag waits longer than flush_interval. Below, a stream's turn comes at
// the end of a burst: with fewer than coalesceViewers viewers once its last
// flush is spacing old; with more, unless its next burst is expected
// before the deadline (it is held for it). A write per viewer is what a
// flush costs, so a stream with few viewers is written at every burst
// (lowest latency, little CPU in all) and one with many is coalesced,
// where it saves the most.
func (f *flusher) flushDue(now time.Time, busy bool) (next time.Time) {
	s := f.s
	capWait := s.cfg.FlushInterval
	due := f.due[:0]
	kept := s.dirty[:0]
	for _, st := range s.dirty {
		at := st.dirtySince.Add(capWait) // the latest it may go out
		if !busy {
			switch {
			case st.audience >= coalesceViewers:
				// Decided once per burst, at its end: a wait begun is not
				// cut short by another stream's burst or a timer.
				if last := st.latestTag(); !last.Equal(st.decided) {
					st.decided, st.hold = last, st.holdFor(now, last, at)
				}
				if !st.hold {
					at = now
				}
			default:
				if ready := st.lastFlush.Add(spacing(capWait, st.audience)); ready.Before(at) {
					at = ready
				}
			}
		}
		if st.urgent || !now.Before(at) {
			due = append(due, st)
			continue
		}
		kept = append(kept, st)
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	clear(s.dirty[len(kept):])
	s.dirty = kept
	if len(due) > 0 {
		f.flushStreams(due, now)
		for i, st := range due {
			st.lastFlush, st.dirty, st.urgent = now, false, false
			st.hold, st.decided = false, time.Time{} // the next tags get a decision of their own
			due[i] = nil
		}
	}
	f.due = due[:0]
	return next
}

// coalesceViewers is the audience from which a stream's writes carry
// more than one burst where they can: a burst is held for the stream's
// next one while that is expected within flush_interval, so a write per
// viewer (what a flush costs, and from here on most of what the stream
// costs) carries two bursts, or more when they come closer. A smaller
// audience is written at every burst, spaced by a share of flush_interval
// that grows with it: latency is worth more there than the writes.
const coalesceViewers = 128

// spacing is the least time between two flushes of a stream with viewers
// viewers (fewer than coalesceViewers), given flush_interval capWait: a
// share of it that grows with the audience, under half of it at most, so
// an audience just short of coalesceViewers does not wait longer than a
// bigger one.
func spacing(capWait time.Duration, viewers int) time.Duration {
	return capWait * time.Duration(min(viewers, coalesceViewers)) / (2 * coalesceViewers)
}

// shutdown stops the listener and ends every viewer's response (within a second).
func (s *Stage) shutdown() {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return
	}
	s.closing = true
	s.auth.Close() // a viewer waiting on the hook is refused now
	all := make([]*stream, 0, len(s.live))
	for st := range s.live {
		all = append(all, st)
	}
	s.mu.Unlock()
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	_ = s.srv.Shutdown(sctx)
	cancel()
	for _, st := range all {
		st.kickAll()
	}
}

func (s *Stage) start(cs *core.Stream) {
	if old := s.streams[cs]; old != nil {
		return
	}
	st := newStream(s, cs)
	s.streams[cs] = st
	s.mu.Lock()
	s.byName[cs.Name] = st // a newer stream of the same name takes over the URL
	s.live[st] = struct{}{}
	s.mu.Unlock()
}

func (s *Stage) end(cs *core.Stream) {
	st := s.streams[cs]
	if st == nil {
		return
	}
	delete(s.streams, cs)
	s.mu.Lock()
	if s.byName[cs.Name] == st {
		delete(s.byName, cs.Name)
	}
	delete(s.live, st)
	s.mu.Unlock()
	st.finish()
}

func (s *Stage) data(p *core.Packet) {
	st := s.streams[p.Stream]
	if st == nil {
		// a stream whose start we missed (should not happen): serve it anyway
		s.start(p.Stream)
		st = s.streams[p.Stream]
	}
	if _, err := flv.Check(p.Data, 0); err != nil {
		s.mBadTag.Inc()
		p.Release()
		return
	}
	now := time.Now()
	st.observe(p.Data, now)
	st.tagPace(p.Type, now)
	st.push(newRef(p), now)
}

// serveHTTP answers GET /APP/KEY.flv, and hands anything else to the
// player pages.
func (s *Stage) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if !viewerhttp.Preflight(w, r) {
		return
	}
	name, ok := streamName(r.URL.Path)
	if !ok && s.page != nil {
		s.page.ServeHTTP(w, r)
		return
	}
	if !ok {
		http.Error(w, "not found: streams are at /APP/KEY.flv", http.StatusNotFound)
		return
	}
	if !viewerhttp.CheckKey(w, r, *s.playKey.Load()) || !s.auth.Admit(w, r, name, nil) {
		return
	}
	maxViewers := int(s.maxViewers.Load())
	s.mu.Lock()
	st := s.byName[name]
	switch {
	case st == nil || s.closing:
		s.mu.Unlock()
		http.Error(w, "no such stream", http.StatusNotFound)
		return
	case r.Method == http.MethodHead:
		s.mu.Unlock()
		w.Header().Set("Content-Type", "video/x-flv")
		w.WriteHeader(http.StatusOK)
		return
	case maxViewers > 0 && s.viewers >= maxViewers:
		s.mu.Unlock()
		s.mRejected.Inc()
		http.Error(w, "too many viewers", http.StatusServiceUnavailable)
		return
	}
	s.viewers++
	s.vwg.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.viewers--
		s.mu.Unlock()
		s.vwg.Done()
	}()
	st.awaitStart(r.Context())
	s.serveViewer(w, st, r.RemoteAddr, r.ProtoAtLeast(1, 1))
}

// streamInfos is the stream list of the player pages.
func (s *Stage) streamInfos() []streaminfo.Info {
	s.mu.RLock()
	sts := make([]*stream, 0, len(s.byName))
	for _, st := range s.byName {
		sts = append(sts, st)
	}
	s.mu.RUnlock()
	now := time.Now()
	out := make([]streaminfo.Info, 0, len(sts))
	for _, st := range sts {
		in := st.info.Snapshot(now)
		st.mu.Lock()
		in.Viewers = len(st.viewers)
		st.mu.Unlock()
		out = append(out, in)
	}
	return out
}

// Reconfigure applies a new play_key, max_viewers and auth_url,
// auth_timeout, auth_fail_open: they decide who is admitted from now on;
// the viewers already playing are not touched. Any other parameter needs a
// restart.
func (s *Stage) Reconfigure(cfg *Config) error {
	rest := *cfg
	rest.PlayKey, rest.MaxViewers = s.cfg.PlayKey, s.cfg.MaxViewers
	rest.AuthURL, rest.AuthTimeout, rest.AuthFailOpen = s.cfg.AuthURL, s.cfg.AuthTimeout, s.cfg.AuthFailOpen
	if rest != s.cfg {
		return fmt.Errorf("httpflv-sink: %w: only play_key, max_viewers and auth_* change in place", core.ErrNotLive)
	}
	key := cfg.PlayKey
	s.playKey.Store(&key)
	s.maxViewers.Store(int64(cfg.MaxViewers))
	s.auth.Reconfigure(cfg.auth())
	s.env.Log.Info("httpflv-sink reconfigured", "play_key", key != "", "max_viewers", cfg.MaxViewers, "auth_url", cfg.AuthURL != "")
	return nil
}

// streamName maps "/live/movie.flv" to "live/movie"; anything odd is refused.
func streamName(path string) (string, bool) {
	name, ok := strings.CutSuffix(strings.TrimPrefix(path, "/"), ".flv")
	if !ok || !strings.Contains(name, "/") {
		return "", false
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", false
		}
	}
	return name, true
}
