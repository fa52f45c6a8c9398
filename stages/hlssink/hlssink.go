// Package hlssink is the hls-sink stage: it serves each stream as HLS
// (GET /APP/KEY/index.m3u8), Low-Latency HLS with fMP4 parts by default.
// The muxing, playlists and blocking reloads are gohlslib's: one muxer per
// live stream, fed the stream's own sequence headers and frames.
package hlssink

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/stages/internal/authhook"
	"github.com/mediapipe/mediapipe/stages/internal/certfile"
	"github.com/mediapipe/mediapipe/stages/internal/playerpage"
	"github.com/mediapipe/mediapipe/stages/internal/streaminfo"
	"github.com/mediapipe/mediapipe/stages/internal/tcplisten"
	"github.com/mediapipe/mediapipe/stages/internal/viewerhttp"
)

// Config is hls-sink's parameters.
type Config struct {
	Listen             string        `param:"listen" required:"true" addr:"true" doc:"HTTP address to serve on; streams are at http://ADDR/APP/KEY/index.m3u8, their player page at http://ADDR/APP/KEY"`
	PlayKey            string        `param:"play_key" secret:"true" live:"true" doc:"when set, a viewer must add ?key=SECRET to the playlist URL (401 without, 403 when wrong); the playlists carry it on into every segment and part URL. On a reload, a new key admits requests with it and refuses the old one from then on"`
	Cert               string        `param:"cert" doc:"PEM certificate file (relative to the pipeline file) to serve HTTPS, with HTTP/2, instead of HTTP; given with key. Reloaded when the files change, so a renewed certificate needs no restart"`
	Key                string        `param:"key" doc:"PEM private key file of cert"`
	Variant            string        `param:"variant" default:"lowLatency" enum:"lowLatency,fmp4,mpegts" doc:"lowLatency: LL-HLS, fMP4 segments split into parts, blocking playlist reload and preload hints; fmp4: plain HLS with fMP4 segments; mpegts: plain HLS with MPEG-TS segments (H.264 and AAC only), for the oldest players"`
	SegmentCount       int           `param:"segment_count" default:"7" min:"3" max:"100" doc:"segments each playlist lists and the sink keeps in memory per stream (lowLatency needs 7 or more); memory per stream is about this many segments (frames that would grow a segment beyond 32 MiB are dropped as mux_error until the next keyframe starts a segment)"`
	SegmentMinDuration time.Duration `param:"segment_min_duration" default:"1s" min:"0.1" max:"60" doc:"a segment lasts at least this long and ends at the first keyframe after it, so segments start at keyframes"`
	PartDuration       time.Duration `param:"part_duration" default:"200ms" min:"0.05" max:"5" doc:"least duration of an LL-HLS part (lowLatency only); players buffer about three parts, so this sets the latency"`
	Page               bool          `param:"page" default:"true" doc:"serve the player pages: / lists the live streams, /APP/KEY plays one with hls.js (or the browser's own HLS); false answers 404 there"`
	MaxStreams         int           `param:"max_streams" default:"64" min:"1" max:"10000" doc:"most streams served at once, counting ended ones whose playlists are still served; a stream beyond it is not served (too_many_streams)"`
	AuthURL            string        `param:"auth_url" live:"true" doc:"when set (an http:// or https:// URL), a request for a playlist, segment or part that passed play_key is served only if a POST of JSON {\"action\":\"play\",\"protocol\":\"hls\",\"stream\":\"APP/KEY\",\"query\":{the URL's query without the _HLS_ directives},\"client\":\"IP:PORT\",\"pipeline\",\"stage\"} here is answered 2xx; otherwise it gets 401 or 403 as the hook answered (403 for anything else). Answers are reused per (action, stream, query): admits for 10 s, refusals and failures for 2 s, so steady playback (the playlists carry the query on into every segment and part URL) makes one call per 10 s per stream and query, not one per request. See docs/hooks.md"`
	AuthTimeout        time.Duration `param:"auth_timeout" default:"2s" min:"0.01" max:"60" live:"true" doc:"the most an auth_url call may take (connect, answer and a wait for one of 32 call slots included); a call that fails or takes longer refuses, unless auth_fail_open"`
	AuthFailOpen       bool          `param:"auth_fail_open" default:"false" live:"true" doc:"admit when the auth_url call fails or times out (counted as auth_error_admitted) instead of refusing (auth_error_refused)"`
}

func (c *Config) auth() authhook.Config {
	return authhook.Config{URL: c.AuthURL, Timeout: c.AuthTimeout, FailOpen: c.AuthFailOpen}
}

// hlsDirective says whether a query key is an LL-HLS playlist directive
// (_HLS_msn, _HLS_part, _HLS_skip): they change with every reload, so they
// are no part of what auth_url is asked.
func hlsDirective(key string) bool { return strings.HasPrefix(key, "_HLS_") }

// Validate checks what the tags cannot.
func (c *Config) Validate() error {
	if c.Variant == "lowLatency" && c.SegmentCount < 7 {
		return fmt.Errorf("segment_count %d: variant lowLatency needs at least 7", c.SegmentCount)
	}
	if (c.Cert == "") != (c.Key == "") {
		return errors.New("cert and key must be given together")
	}
	if err := authhook.ValidateURL(c.AuthURL); err != nil {
		return err
	}
	return nil
}

// ValidateIn loads the certificate pair, so a bad pair fails validation.
func (c *Config) ValidateIn(dir string) error {
	if c.Cert == "" {
		return nil
	}
	if _, err := certfile.Load(core.InDir(dir, c.Cert), core.InDir(dir, c.Key), nil); err != nil {
		return fmt.Errorf("cert/key: %w", err)
	}
	return nil
}

//go:embed sample.toml
var sample string

func init() {
	core.Register(core.Spec{
		Name:    "hls-sink",
		Summary: "serves GET /APP/KEY/index.m3u8: LL-HLS with fMP4 parts (or plain fMP4 / MPEG-TS HLS) of H.264 or H.265 and AAC, muxed by gohlslib from the stream's sequence headers and frames; an ended stream's playlist ends (#EXT-X-ENDLIST); a player page per stream",
		In:      core.KindFLV,
		Out:     core.KindNone,
		Sample:  sample,
	}, New)
}

// Timings of ended streams and waiting requests.
const (
	// endLinger is how long an ended stream's playlists (with
	// #EXT-X-ENDLIST) and segments stay served, so players polling it learn
	// it ended and can fetch what they lack.
	endLinger = 15 * time.Second
	// playlistWait bounds how long a playlist request waits for a stream to
	// have content (or, with _HLS_msn, for the part asked for).
	playlistWait = 10 * time.Second
	// maxWaiting bounds the playlist requests held in gohlslib at once
	// over the stage (503 and request_rejected beyond).
	maxWaiting = 4096
)

// Stage is a running hls-sink.
type Stage struct {
	cfg Config
	env *core.Env
	tcplisten.Listener
	srv   *http.Server
	certs *certfile.Reloader // nil: plain HTTP
	page  http.Handler       // nil: page = false

	playKey atomic.Pointer[string]
	auth    *authhook.Hook // auth_url; live too

	mu      sync.Mutex
	byName  map[string]*entry // served: live and lingering ended
	closing bool
	done    chan struct{} // closed at shutdown: waiting requests give up

	streams map[*core.Stream]*stream // Run's own
	current map[string]*stream       // Run's own: the stream serving each name
	waiting atomic.Int64             // playlist requests held in gohlslib
	hwg     sync.WaitGroup           // goroutines running a muxer's Handle for a playlist

	mKeys      prometheus.Counter
	mRequests  prometheus.Counter
	mBadTag    *core.DropCounter
	mNoKey     *core.DropCounter // frames before the stream's first keyframe
	mNoConfig  *core.DropCounter // frames before the sequence headers
	mCodec     *core.DropCounter // codecs HLS here does not carry
	mMuxErr    *core.DropCounter
	mTooMany   *core.DropCounter
	mRejected  *core.DropCounter // requests refused: waiting bound
	mRestarted prometheus.Counter
	mWarn      prometheus.Counter

	sessions *sessions // the control API's HLS viewers (session.go)
}

// New builds an hls-sink.
func New(cfg *Config, env *core.Env) (core.Stage, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("hls-sink: %w", err)
	}
	s := &Stage{
		cfg:        *cfg,
		env:        env,
		Listener:   tcplisten.New("hls-sink", cfg.Listen),
		byName:     map[string]*entry{},
		streams:    map[*core.Stream]*stream{},
		current:    map[string]*stream{},
		done:       make(chan struct{}),
		mKeys:      env.Metrics.Counter("keyframes"),
		mRequests:  env.Metrics.Counter("requests"),
		mRestarted: env.Metrics.Counter("muxer_restarts"),
		mWarn:      env.Metrics.Counter("mux_warnings"),
		mBadTag:    env.Metrics.Drop("bad_tag"),
		mNoKey:     env.Metrics.Drop("no_keyframe"),
		mNoConfig:  env.Metrics.Drop("no_sequence_header"),
		mCodec:     env.Metrics.Drop("unsupported_codec"),
		mMuxErr:    env.Metrics.Drop("mux_error"),
		mTooMany:   env.Metrics.Drop("too_many_streams"),
		mRejected:  env.Metrics.Drop("request_rejected"),
	}
	s.playKey.Store(&s.cfg.PlayKey)
	s.sessions = newSessions(s)
	s.auth = authhook.New(env, authhook.HLS, cfg.auth())
	if cfg.Cert != "" {
		certs, err := certfile.Load(env.Path(cfg.Cert), env.Path(cfg.Key), env.Log)
		if err != nil {
			return nil, fmt.Errorf("hls-sink: %w", err)
		}
		s.certs = certs
	}
	if cfg.Page {
		s.page = playerpage.New(playerpage.Options{
			Protocol: playerpage.HLS,
			Streams:  s.Streams,
			PlayKey:  func() string { return *s.playKey.Load() },
			Log:      env.Log,
		})
	}
	s.srv = &http.Server{
		Handler:           http.HandlerFunc(s.serveHTTP),
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    16 << 10,
		IdleTimeout:       time.Minute,
		// What a stranger can cause (a failed handshake, a plain request
		// to the HTTPS port) is logged at debug level only.
		ErrorLog: slog.NewLogLogger(env.Log.Handler(), slog.LevelDebug),
	}
	if s.certs != nil {
		// "h2" first: LL-HLS players fetch playlist, parts and hints in
		// parallel over one connection.
		s.srv.TLSConfig = s.certs.TLSConfig("h2", "http/1.1")
	}
	return s, nil
}

// Run muxes tags until in closes; ctx only stops the HTTP server early.
func (s *Stage) Run(ctx context.Context, in <-chan *core.Packet, _ core.Output) error {
	ln, err := s.Listen(ctx)
	if err != nil {
		return err
	}
	serve := func() error { return s.srv.Serve(ln) }
	scheme := "http"
	if s.certs != nil {
		serve = func() error { return s.srv.ServeTLS(ln, "", "") }
		scheme = "https"
	}
	stop := viewerhttp.Serve(ctx, "hls-sink", s.env.Log, serve, s.shutdown)
	s.env.Log.Info("hls-sink listening", "addr", ln.Addr().String(), "scheme", scheme, "variant", s.cfg.Variant)

	s.serve(in)
	for cs := range s.streams {
		s.end(cs)
	}
	s.retire(time.Now(), true) // every muxer closes: held requests end
	stop()
	s.hwg.Wait()
	s.sessions.sweep(time.Now(), true)
	s.auth.Close()
	return nil
}

// serve takes packets until in closes; once a second it retires ended
// streams whose playlists have been served long enough.
func (s *Stage) serve(in <-chan *core.Packet) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case p, ok := <-in:
			if !ok {
				return
			}
			switch p.Event {
			case core.EventStart:
				s.start(p.Stream)
			case core.EventEnd:
				s.end(p.Stream)
			default:
				s.data(p)
			}
			p.Release()
		case now := <-tick.C:
			s.retire(now, false)
			s.sessions.sweep(now, false)
		}
	}
}

// retire closes the ended streams whose linger is over (all of them when
// all), or, with all false, none but those.
func (s *Stage) retire(now time.Time, all bool) {
	var gone []*entry
	s.mu.Lock()
	for name, e := range s.byName {
		if e.endedAt() && (all || now.After(e.lingerUntil)) {
			delete(s.byName, name)
			gone = append(gone, e)
		}
	}
	s.mu.Unlock()
	for _, e := range gone {
		e.close()
	}
}

// shutdown stops the listener and frees the requests this stage holds.
func (s *Stage) shutdown() {
	s.auth.Close() // a request waiting on the hook is refused now
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return
	}
	s.closing = true
	close(s.done)
	s.mu.Unlock()
	// The muxers are Run's to close (it may still be writing to them);
	// requests gohlslib holds (preload hints) end when it does.
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	_ = s.srv.Shutdown(sctx)
	cancel()
	_ = s.srv.Close()
}

func (s *Stage) start(cs *core.Stream) {
	if s.streams[cs] != nil {
		return
	}
	now := time.Now()
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return
	}
	old := s.byName[cs.Name]
	if old == nil && len(s.byName) >= s.cfg.MaxStreams {
		// make room by retiring the ended stream that ended first
		var oldest *entry
		for _, e := range s.byName {
			if e.endedAt() && (oldest == nil || e.lingerUntil.Before(oldest.lingerUntil)) {
				oldest = e
			}
		}
		if oldest == nil {
			s.mu.Unlock()
			s.mTooMany.Inc()
			s.env.Log.Warn("hls-sink: too many streams; not serving", "stream", cs.Name, "max_streams", s.cfg.MaxStreams)
			s.streams[cs] = nil
			return
		}
		delete(s.byName, oldest.name)
		defer oldest.close()
	}
	e := newEntry(cs.Name, streaminfo.New(cs.Name, now))
	s.byName[cs.Name] = e // a newer stream of the same name takes over the URL
	s.mu.Unlock()
	if old != nil {
		old.close()
	}
	if prev := s.current[cs.Name]; prev != nil {
		prev.detached = true // its muxer just closed: it writes no more
	}
	st := newStream(s, e, cs)
	s.streams[cs] = st
	s.current[cs.Name] = st
}

func (s *Stage) end(cs *core.Stream) {
	st, ok := s.streams[cs]
	delete(s.streams, cs)
	if !ok || st == nil || st.detached {
		return
	}
	delete(s.current, cs.Name)
	st.finish(time.Now())
}

func (s *Stage) data(p *core.Packet) {
	st, ok := s.streams[p.Stream]
	if !ok {
		// a stream whose start we missed (should not happen): serve it anyway
		s.start(p.Stream)
		st = s.streams[p.Stream]
	}
	if st == nil || st.detached { // refused (too many streams), or replaced
		return
	}
	st.tag(p)
}

// Streams lists the live streams, as the player page shows them. Viewers
// are the client connections that fetched one of the stream's playlists in
// the last 5 s (a player polls its playlist at least once a target
// duration; over HTTP/2 a player is one connection, over HTTP/1.1 it may be
// two), told apart up to 10000 a stream.
func (s *Stage) Streams() []streaminfo.Info {
	now := time.Now()
	s.mu.Lock()
	live := make([]*entry, 0, len(s.byName))
	for _, e := range s.byName {
		if !e.endedAt() {
			live = append(live, e)
		}
	}
	s.mu.Unlock()
	out := make([]streaminfo.Info, 0, len(live))
	for _, e := range live {
		in := e.info.Snapshot(now)
		in.Viewers = e.viewerCount(now)
		out = append(out, in)
	}
	return out
}

// serveHTTP answers GET /APP/KEY/FILE for the media files and sends every
// other path to the player pages.
func (s *Stage) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if !viewerhttp.Preflight(w, r) {
		return
	}
	name, file, ok := mediaPath(r.URL.Path)
	if !ok {
		if s.page != nil {
			s.page.ServeHTTP(w, r)
			return
		}
		http.Error(w, "not found: streams are at /APP/KEY/index.m3u8", http.StatusNotFound)
		return
	}
	s.mRequests.Inc()
	if !viewerhttp.CheckKey(w, r, *s.playKey.Load()) || !s.auth.Admit(w, r, name, hlsDirective) {
		return
	}
	s.mu.Lock()
	e := s.byName[name]
	closing := s.closing
	s.mu.Unlock()
	if e == nil || closing {
		http.Error(w, "no such stream", http.StatusNotFound)
		return
	}
	now := time.Now()
	counter, ok := s.sessions.touch(r.RemoteAddr, name, now, !e.endedAt())
	if !ok {
		http.Error(w, "disconnected by the operator", http.StatusForbidden)
		return
	}
	if counter != nil {
		w = countingWriter{ResponseWriter: w, n: counter}
	}
	if strings.HasSuffix(file, ".m3u8") {
		e.sawViewer(r.RemoteAddr, now)
		s.servePlaylist(w, r, e, file)
		return
	}
	m, _ := e.current()
	if m == nil {
		http.Error(w, "no such file", http.StatusNotFound)
		return
	}
	tw := &trackingWriter{ResponseWriter: w}
	m.mux.Handle(tw, r)
	if !tw.wrote {
		http.Error(w, "no such file (gone from the playlist)", http.StatusNotFound)
	}
}

// Reconfigure applies a new play_key and auth_url, auth_timeout,
// auth_fail_open: they decide which requests are served from now on. Any
// other parameter needs a restart.
func (s *Stage) Reconfigure(cfg *Config) error {
	rest := *cfg
	rest.PlayKey = s.cfg.PlayKey
	rest.AuthURL, rest.AuthTimeout, rest.AuthFailOpen = s.cfg.AuthURL, s.cfg.AuthTimeout, s.cfg.AuthFailOpen
	if rest != s.cfg {
		return fmt.Errorf("hls-sink: %w: only play_key and auth_* change in place", core.ErrNotLive)
	}
	key := cfg.PlayKey
	s.playKey.Store(&key)
	s.auth.Reconfigure(cfg.auth())
	s.env.Log.Info("hls-sink reconfigured", "play_key", key != "", "auth_url", cfg.AuthURL != "")
	return nil
}

// mediaPath maps "/live/movie/index.m3u8" to ("live/movie", "index.m3u8"):
// a media file (playlist, init, segment or part) under a stream name of at
// least two segments; anything else is not a media path.
func mediaPath(path string) (name, file string, ok bool) {
	i := strings.LastIndexByte(path, '/')
	if i <= 0 {
		return "", "", false
	}
	name, file = strings.TrimPrefix(path[:i], "/"), path[i+1:]
	switch {
	case strings.HasSuffix(file, ".m3u8"), strings.HasSuffix(file, ".mp4"), strings.HasSuffix(file, ".ts"):
	default:
		return "", "", false
	}
	if !strings.Contains(name, "/") {
		return "", "", false
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", "", false
		}
	}
	return name, file, true
}

// trackingWriter tells whether gohlslib answered at all: it writes nothing
// for a file it does not know.
type trackingWriter struct {
	http.ResponseWriter
	wrote bool
}

func (t *trackingWriter) WriteHeader(code int) {
	t.wrote = true
	t.ResponseWriter.WriteHeader(code)
}

func (t *trackingWriter) Write(b []byte) (int, error) {
	t.wrote = true
	return t.ResponseWriter.Write(b)
}
