// Package rtmpsource is the rtmp-source stage: an RTMP server (go-rtmp) that
// accepts publishers and emits their media messages as av packets, one stream per APP/KEY.
package rtmpsource

import (
	"context"
	"crypto/subtle"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	rtmp "github.com/yutopp/go-rtmp"
	rtmpmsg "github.com/yutopp/go-rtmp/message"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/announce"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/stages/internal/authhook"
	"github.com/mediapipe/mediapipe/stages/internal/tcplisten"
)

// Config is rtmp-source's parameters.
type Config struct {
	Listen         string        `param:"listen" required:"true" addr:"true" doc:"TCP address the RTMP server listens on, e.g. 127.0.0.1:1935"`
	PublishKey     string        `param:"publish_key" secret:"true" live:"true" doc:"when set, a publisher must add ?key=SECRET to the stream name or is refused. On a reload, a new key admits new publishers with it and refuses the old one from then on; a publisher already streaming keeps streaming"`
	IdleTimeout    time.Duration `param:"idle_timeout" default:"10s" min:"0.1" doc:"close a connection that has not published within this long of connecting (one deadline for handshake, connect and publish, however slowly bytes trickle in), or that stops sending for this long afterwards"`
	MaxMessageSize int           `param:"max_message_size" default:"8388608" min:"65536" max:"16777215" doc:"largest RTMP message in bytes; a bigger one closes the connection (counted) before anything is allocated for it"`
	MaxPublishers  int           `param:"max_publishers" default:"0" min:"0" doc:"most streams published at once; 0 means no limit. A stream waiting out its reconnect_grace still counts (its publisher's return is always admitted)"`
	ReconnectGrace time.Duration `param:"reconnect_grace" default:"5s" min:"0" live:"true" doc:"when a stream's publisher goes (connection closed or failed, idle_timeout, unpublish), the stream stays open this long: a publisher of the same name back within it continues the same stream (no end and start downstream, timestamps continuing from the last one sent, its sequence headers and onMetaData in-band, its video from its first keyframe), so viewers keep playing; after it the stream ends. The returning publisher is admitted as any (publish_key, auth_url); a publisher kicked through the control API ends its stream at once; 0: the stream ends at once. On a reload, applies to publishers leaving from then on"`
	AuthURL        string        `param:"auth_url" live:"true" doc:"when set (an http:// or https:// URL), a publisher that passed publish_key is admitted only if a POST of JSON {\"action\":\"publish\",\"protocol\":\"rtmp\",\"stream\":\"APP/KEY\",\"query\":{the stream name's ?query},\"client\":\"IP:PORT\",\"pipeline\",\"stage\"} here is answered 2xx; otherwise its publish fails (NetStream.Publish.Failed) and the connection is closed. Answers are reused per (action, stream, query): admits for 10 s, refusals and failures for 2 s; one call at a time per question. See docs/hooks.md"`
	AuthTimeout    time.Duration `param:"auth_timeout" default:"2s" min:"0.01" max:"60" live:"true" doc:"the most an auth_url call may take (connect, answer and a wait for one of 32 call slots included); a call that fails or takes longer refuses, unless auth_fail_open"`
	AuthFailOpen   bool          `param:"auth_fail_open" default:"false" live:"true" doc:"admit when the auth_url call fails or times out (counted as auth_error_admitted) instead of refusing (auth_error_refused)"`
}

// Validate checks auth_url.
func (c *Config) Validate() error { return authhook.ValidateURL(c.AuthURL) }

func (c *Config) auth() authhook.Config {
	return authhook.Config{URL: c.AuthURL, Timeout: c.AuthTimeout, FailOpen: c.AuthFailOpen}
}

// sample is an example [[pipeline.stage]] block for this stage, carried in
// its spec; stages/all checks that it validates.
//
//go:embed sample.toml
var sample string

func init() {
	core.Register(core.Spec{
		Name:    "rtmp-source",
		Summary: "RTMP server: accepts publishers (ffmpeg, OBS) and emits their media messages, one stream per APP/KEY",
		In:      core.KindNone,
		Out:     core.KindAV,
		Sample:  sample,
	}, New)
}

// Stage is a running rtmp-source.
type Stage struct {
	cfg Config
	env *core.Env

	// the stage's Open and Addr
	tcplisten.Listener
	out core.Output
	// publishKey starts as cfg's; a reload changes it (Reconfigure) while
	// publishers stream.
	publishKey atomic.Pointer[string]
	auth       *authhook.Hook // auth_url; live too

	mu        sync.Mutex
	closing   bool
	conns     map[*guardedConn]struct{}
	streams   map[string]*handler // live streams by name
	wg        sync.WaitGroup      // one per accepted connection, until go-rtmp closes it
	published prometheus.Counter
	live      prometheus.Gauge
	refused   *core.DropCounter
	bad       map[string]*core.DropCounter
	connErr   *core.DropCounter

	// reconnect_grace (a live parameter) and the streams waiting out theirs.
	grace     atomic.Int64
	paused    map[string]*timeline // under mu
	graceWG   sync.WaitGroup       // one per armed grace timer, until its callback returns or it is stopped
	continued prometheus.Counter
	expired   prometheus.Counter
	nonKey    *core.DropCounter
}

// timeline is a stream's timestamp state, kept across its publishers: a
// publisher who comes back within reconnect_grace continues from it.
type timeline struct {
	stream    *core.Stream
	last      uint32 // largest timestamp emitted
	lastVideo uint32
	gap       uint32      // the video frame interval seen last: the step from the old publisher's last tag to the new one's first
	seen      bool        // last holds a timestamp (the first may be ≥ 2^31: an encoder stamping its uptime)
	timer     *time.Timer // while paused
	pauses    int         // pauses so far: a grace timer acts only on its own (under Stage.mu)
}

// defaultGap is the step between publishers before a frame interval is measured (25 fps).
const defaultGap = 40

// note records an emitted tag's timestamp.
func (tl *timeline) note(typ uint8, ts uint32) {
	if !tl.seen || int32(ts-tl.last) > 0 {
		tl.last, tl.seen = ts, true
	}
	if typ == flv.TypeVideo {
		if d := ts - tl.lastVideo; d > 0 && d <= 1000 {
			tl.gap = d
		}
		tl.lastVideo = ts
	}
}

// New builds an rtmp-source from its config.
func New(cfg *Config, env *core.Env) (core.Stage, error) {
	s := &Stage{
		cfg:       *cfg,
		env:       env,
		Listener:  tcplisten.New("rtmp-source", cfg.Listen),
		conns:     map[*guardedConn]struct{}{},
		streams:   map[string]*handler{},
		published: env.Metrics.Counter("streams_published"),
		live:      env.Metrics.Gauge("streams"),
		refused:   env.Metrics.Drop("publish_refused"),
		connErr:   env.Metrics.Drop("connection_error"),
		bad:       map[string]*core.DropCounter{},
		paused:    map[string]*timeline{},
		continued: env.Metrics.Counter("reconnects_continued"),
		expired:   env.Metrics.Counter("reconnect_grace_expired"),
		// video a returning publisher sent before its first keyframe
		nonKey: env.Metrics.Drop("reconnect_before_keyframe"),
	}
	s.publishKey.Store(&s.cfg.PublishKey)
	s.grace.Store(int64(cfg.ReconnectGrace))
	s.auth = authhook.New(env, authhook.RTMP, cfg.auth())
	for _, reason := range []string{"message_too_large", "malformed", "idle_timeout"} {
		s.bad[reason] = env.Metrics.Drop(reason)
	}
	return s, nil
}

// Run serves publishers until ctx is cancelled, then closes the listener and
// every connection, ends every stream and returns.
func (s *Stage) Run(ctx context.Context, _ <-chan *core.Packet, out core.Output) error {
	ln, err := s.Listen(ctx)
	if err != nil {
		return err
	}
	s.out = out
	srv := rtmp.NewServer(&rtmp.ServerConfig{OnConnect: s.onConnect})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(trackingListener{Listener: ln, s: s}) }()
	s.env.Log.Info("rtmp-source listening", "addr", ln.Addr().String())

	<-ctx.Done()
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.auth.Close() // a publish waiting on the hook is refused now
	_ = srv.Close()
	// go-rtmp's Close misses a listener that Serve has not registered yet
	// (a stop right after start): close it here too so Accept returns.
	_ = ln.Close()
	<-served // no Accept after this: wg only goes down
	s.mu.Lock()
	for c := range s.conns {
		_ = c.Conn.Close() // go-rtmp notices, calls OnClose, then guardedConn.Close
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.endPaused()
	s.auth.Close()
	s.env.Log.Info("rtmp-source stopped", "addr", ln.Addr().String())
	return nil
}

func (s *Stage) track(nc net.Conn) *guardedConn {
	c := &guardedConn{Conn: nc, s: s, idle: s.cfg.IdleTimeout, guard: newChunkGuard(s.cfg.MaxMessageSize), raw: newRawReader(nc)}
	if c.idle > 0 { // the handshake, connect and publish all by this; Read re-arms it once published
		_ = nc.SetReadDeadline(time.Now().Add(c.idle))
	}
	s.wg.Add(1)
	s.mu.Lock()
	s.conns[c] = struct{}{}
	closing := s.closing
	s.mu.Unlock()
	if closing {
		_ = nc.Close()
	}
	return c
}

func (s *Stage) forget(c *guardedConn) {
	s.mu.Lock()
	delete(s.conns, c)
	closing := s.closing
	s.mu.Unlock()
	if !closing && !c.done.Load() { // an orderly end after unpublish counts as nothing
		if cause := c.cause.Load(); cause != nil {
			if d := s.bad[*cause]; d != nil {
				d.Inc()
			}
		} else if c.failed.Load() {
			s.connErr.Inc()
		}
	}
	s.wg.Done()
}

func (s *Stage) onConnect(nc net.Conn) (io.ReadWriteCloser, *rtmp.ConnConfig) {
	c := nc.(*guardedConn)
	logger := logrus.New()
	logger.Out = io.Discard
	logger.Level = logrus.ErrorLevel
	logger.AddHook(errorHook{c: c})
	h := &handler{s: s, c: c}
	return c, &rtmp.ConnConfig{
		Handler: h,
		Logger:  logger,
		ControlState: rtmp.StreamControlStateConfig{
			DefaultBandwidthWindowSize: 6 * 1024 * 1024 / 8,
			MaxMessageSize:             uint32(s.cfg.MaxMessageSize),
			MaxChunkStreams:            maxChunkStreams,
		},
	}
}

var (
	errRefused     = errors.New("publish refused")
	errPlayRefused = errors.New("rtmp-source does not serve players")
)

// splitKey separates "name?key=x" into the name and the key value.
func splitKey(s string) (name, key string) {
	name, query, ok := strings.Cut(s, "?")
	if !ok {
		return name, ""
	}
	v, _ := url.ParseQuery(query)
	return name, v.Get("key")
}

// claim registers a live stream, or says why it may not be published. A
// stream waiting out its reconnect_grace is given back (its timeline) to be
// continued.
func (s *Stage) claim(name string, h *handler) (string, *timeline) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closing:
		return "shutting down", nil
	case s.streams[name] != nil:
		return "stream already published", nil
	}
	if tl := s.paused[name]; tl != nil {
		delete(s.paused, name)
		if tl.timer.Stop() {
			s.graceWG.Done()
		} // else its callback is waiting for mu and will find it gone
		tl.timer = nil
		s.streams[name] = h
		return "", tl
	}
	if s.cfg.MaxPublishers > 0 && len(s.streams)+len(s.paused) >= s.cfg.MaxPublishers {
		return "max_publishers reached", nil
	}
	s.streams[name] = h
	return "", nil
}

// release frees name's publisher slot.
func (s *Stage) release(name string) {
	s.mu.Lock()
	delete(s.streams, name)
	s.mu.Unlock()
}

// hold frees name's publisher slot and, with a reconnect_grace and not
// shutting down, keeps its stream open for a returning publisher (true).
func (s *Stage) hold(name string, tl *timeline) bool {
	grace := time.Duration(s.grace.Load())
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.streams, name)
	if grace <= 0 || s.closing {
		return false
	}
	s.paused[name] = tl
	s.graceWG.Add(1)
	tl.pauses++
	pause := tl.pauses
	tl.timer = time.AfterFunc(grace, func() { s.expire(name, tl, pause) })
	return true
}

// expire ends a paused stream whose publisher did not come back in time.
func (s *Stage) expire(name string, tl *timeline, pause int) {
	defer s.graceWG.Done()
	s.mu.Lock()
	// Its own grace still: the stream may have been continued and paused
	// again (the same timeline, a new pause) while this timer fired.
	mine := s.paused[name] == tl && tl.pauses == pause
	if mine {
		delete(s.paused, name)
	}
	s.mu.Unlock()
	if !mine { // continued, or ended by shutdown
		return
	}
	s.expired.Inc()
	s.end(tl.stream, "reconnect_grace expired")
}

// endPaused ends, at shutdown, every stream waiting for its publisher.
func (s *Stage) endPaused() {
	s.mu.Lock()
	var ending []*timeline
	for name, tl := range s.paused {
		delete(s.paused, name)
		if tl.timer.Stop() {
			s.graceWG.Done()
		}
		ending = append(ending, tl)
	}
	s.mu.Unlock()
	for _, tl := range ending {
		s.end(tl.stream, "shutdown")
	}
	s.graceWG.Wait()
}

// end ends a stream downstream.
func (s *Stage) end(st *core.Stream, why string) {
	s.live.Dec()
	s.env.Log.Info("stream end", "stream", st.Name, "packets", st.Packets.Load(), "why", why)
	s.out.Emit(core.NewEvent(core.EventEnd, st))
}

func (s *Stage) keyOK(given string) bool {
	want := *s.publishKey.Load()
	if want == "" {
		return true
	}
	return subtle.ConstantTimeCompare([]byte(given), []byte(want)) == 1
}

// Reconfigure applies a new publish_key and auth_url, auth_timeout,
// auth_fail_open: publishes from now on need them; the publishers already
// streaming were admitted and keep streaming. Any other parameter needs a
// restart.
func (s *Stage) Reconfigure(cfg *Config) error {
	rest := *cfg
	rest.PublishKey = s.cfg.PublishKey
	rest.ReconnectGrace = s.cfg.ReconnectGrace
	rest.AuthURL, rest.AuthTimeout, rest.AuthFailOpen = s.cfg.AuthURL, s.cfg.AuthTimeout, s.cfg.AuthFailOpen
	if rest != s.cfg {
		return fmt.Errorf("rtmp-source: %w: only publish_key, reconnect_grace and auth_* change in place", core.ErrNotLive)
	}
	key := cfg.PublishKey
	s.publishKey.Store(&key)
	s.grace.Store(int64(cfg.ReconnectGrace))
	s.auth.Reconfigure(cfg.auth())
	s.env.Log.Info("rtmp-source reconfigured", "publish_key", key != "", "reconnect_grace", cfg.ReconnectGrace, "auth_url", cfg.AuthURL != "")
	return nil
}

// handler is one RTMP connection's go-rtmp callbacks.
type handler struct {
	rtmp.DefaultHandler
	s       *Stage
	c       *guardedConn
	conn    *rtmp.Conn // go-rtmp's, from OnServe
	app     string
	appKey  string
	appQry  string // the app's ?query, for auth_url
	stream  *core.Stream
	scratch []byte // reused to drain go-rtmp's reused payload reader
	// unregister removes the publisher's session (env.Sessions) when the
	// connection ends.
	unregister func()

	// The stream's timeline; a publisher continuing a stream (resumed)
	// shifts its timestamps by offset, set at its first tag, so they go on
	// one frame interval after the last one sent, never below floor, and
	// drops its video before its first keyframe (waitKey).
	tl        *timeline
	resumed   bool
	offsetSet bool
	waitKey   bool
	offset    uint32
	floor     uint32
}

func (h *handler) OnServe(conn *rtmp.Conn) { h.conn = conn }

func (h *handler) OnConnect(_ uint32, cmd *rtmpmsg.NetConnectionConnect) error {
	h.app, h.appKey = splitKey(cmd.Command.App)
	_, h.appQry, _ = strings.Cut(cmd.Command.App, "?")
	h.app = strings.Trim(h.app, "/")
	return h.setChunkSize()
}

// serverChunkSize is the chunk size rtmp-source announces, as nginx-rtmp
// does (SRS announces 60000): ffmpeg, which otherwise keeps RTMP's
// default of 128 bytes, answers with the same size for what it sends.
// At 128 it sent a 4 kB video frame as 65 send calls (a chunk and its
// one-byte header each), which reached the relay as several segments
// and woke it several times per frame whenever it was quick to
// acknowledge the first (perf at 1 stream x 200 viewers: up to 2 reads
// of 1 or 128 bytes per message).
const serverChunkSize = 4096

// setChunkSize announces serverChunkSize and chunks what the server sends
// from then on by it. It runs in OnConnect, on go-rtmp's reading
// goroutine, before go-rtmp answers the connect: the Set Chunk Size
// message goes straight onto the connection ahead of everything chunked
// by the new size, and go-rtmp's first message on chunk stream 2 after it
// carries a full header. That needs nothing of go-rtmp's written or
// queued yet. Before connect go-rtmp writes only acknowledgements, once a
// client that set a window of its own has sent half of it; such a client
// (none seen in practice) is left at the default chunk size rather than
// have the message raced against them.
func (h *handler) setChunkSize() error {
	if h.conn == nil { // OnServe not called: go-rtmp changed under us
		return nil
	}
	if window := int64(h.conn.GetChunkStreamer().PeerState().AckWindowSize()); h.c.readBytes >= window/2 {
		return nil
	}
	var msg [16]byte
	msg[0] = 2 // chunk header type 0, chunk stream 2 (protocol control)
	// timestamp 0 (3 bytes), message length 4 (3), type 1 (Set Chunk
	// Size), message stream 0 (4, little-endian)
	msg[6], msg[7] = 4, 1
	binary.BigEndian.PutUint32(msg[12:], serverChunkSize)
	if _, err := h.c.Write(msg[:]); err != nil {
		return fmt.Errorf("rtmp-source: sending Set Chunk Size: %w", err)
	}
	if err := h.conn.GetChunkStreamer().SelfState().SetChunkSize(serverChunkSize); err != nil {
		return fmt.Errorf("rtmp-source: chunk size: %w", err)
	}
	return nil
}

func (h *handler) OnPlay(*rtmp.StreamContext, uint32, *rtmpmsg.NetStreamPlay) error {
	h.c.setCause("refused")
	return errPlayRefused
}

func (h *handler) OnPublish(_ *rtmp.StreamContext, _ uint32, cmd *rtmpmsg.NetStreamPublish) error {
	key, given := splitKey(cmd.PublishingName)
	if given == "" {
		given = h.appKey
	}
	name := h.app + "/" + strings.Trim(key, "/")
	reason := ""
	switch {
	case h.stream != nil:
		reason = "connection already publishes"
	case h.app == "" || key == "" || strings.Contains(name, ".."):
		reason = "bad stream name"
	case !announce.ValidName(name):
		// udp-sink could not announce it in RTCP SDES, so no edge would
		// ever play it: refuse now rather than carry a stream nobody gets.
		reason = "stream name cannot be announced (1-255 bytes of UTF-8, no control characters)"
	case !h.s.keyOK(given):
		reason = "wrong publish key"
	case !h.authOK(name, cmd.PublishingName):
		reason = "refused by auth_url"
	}
	var tl *timeline
	if reason == "" {
		reason, tl = h.s.claim(name, h)
	}
	if reason != "" {
		h.c.setCause("refused")
		// A stranger can repeat this as fast as they connect: the name is
		// clipped and the line limited per interval, the rest counted.
		h.s.refused.Refused("publish refused", "stream", core.Clip(name), "remote", h.c.RemoteAddr().String(), "why", reason)
		return fmt.Errorf("%w: %s", errRefused, reason)
	}
	h.c.published.Store(true)
	if tl != nil {
		// The same stream goes on: downstream sees no end and no start.
		h.stream, h.tl, h.resumed, h.waitKey, h.floor = tl.stream, tl, true, true, tl.last
		h.s.continued.Inc()
		h.s.env.Log.Info("stream continued by a returning publisher", "stream", name, "remote", h.c.RemoteAddr().String())
	} else {
		h.stream = core.NewStream(name)
		h.tl = &timeline{stream: h.stream, gap: defaultGap}
		h.s.published.Inc()
		h.s.live.Inc()
		h.s.env.Log.Info("stream start", "stream", name, "remote", h.c.RemoteAddr().String())
	}
	h.unregister = h.s.env.Sessions.Add(&core.Session{Kind: core.Publisher, Stream: name, Protocol: "rtmp",
		Client: h.c.RemoteAddr().String(), Pipeline: h.s.env.Pipeline, Stage: h.s.env.Index,
		Bytes: h.stream.Bytes.Load, Kick: func() {
			h.s.auth.Forget(name) // a kicked publisher's next try asks the hook again
			h.c.kick()
		}})
	if tl == nil {
		h.s.out.Emit(core.NewEvent(core.EventStart, h.stream))
	}
	return nil
}

// authOK asks auth_url about publishing name, with the query of the
// stream name (publishing) or, failing that, of the app.
func (h *handler) authOK(name, publishing string) bool {
	if !h.s.auth.Enabled() {
		return true
	}
	_, raw, ok := strings.Cut(publishing, "?")
	if !ok {
		raw = h.appQry
	}
	q, _ := url.ParseQuery(raw)
	// Waiting is bounded by auth_timeout (the call in flight for this
	// question ends by then), and cut short at shutdown.
	d, _ := h.s.auth.Check(context.Background(), authhook.Publish, name, authhook.Values(q, nil), h.c.RemoteAddr().String())
	return d.Admit
}

func (h *handler) OnSetDataFrame(ts uint32, data *rtmpmsg.NetStreamSetDataFrame) error {
	if h.stream == nil {
		return nil
	}
	// go-rtmp strips "@setDataFrame": Payload is "onMetaData" + ECMA array,
	// which is exactly an FLV script tag body.
	h.emit(flv.TypeScript, ts, data.Payload)
	return nil
}

func (h *handler) OnAudio(ts uint32, payload io.Reader) error {
	return h.media(flv.TypeAudio, ts, payload)
}
func (h *handler) OnVideo(ts uint32, payload io.Reader) error {
	return h.media(flv.TypeVideo, ts, payload)
}

func (h *handler) media(typ uint8, ts uint32, payload io.Reader) error {
	if h.stream == nil {
		return nil
	}
	// go-rtmp reuses the reader's buffer: drain it into our own first.
	buf := h.scratch[:0]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := payload.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF || (err == nil && n == 0) {
			break
		}
		if err != nil {
			return err
		}
	}
	h.scratch = buf
	if h.waitKey && typ == flv.TypeVideo {
		// A continued stream goes on at a keyframe: frames before it
		// refer to pictures viewers never got. Sequence headers pass.
		switch {
		case flv.IsVideoKeyframe(buf):
			h.waitKey = false
		case flv.InitKindOf(typ, buf) == flv.InitNone:
			h.s.nonKey.Inc()
			return nil
		}
	}
	h.emit(typ, ts, buf)
	return nil
}

func (h *handler) emit(typ uint8, ts uint32, body []byte) {
	if h.resumed {
		if !h.offsetSet {
			h.offset, h.offsetSet = h.tl.last+h.tl.gap-ts, true
		}
		if ts += h.offset; int32(ts-h.floor) < 0 {
			ts = h.floor // a tag older than the first: never back across the seam
		}
	}
	h.tl.note(typ, ts)
	p := core.NewPacket(len(body))
	copy(p.Data, body)
	p.Stream, p.Type, p.Timestamp, p.Ingest = h.stream, typ, ts, time.Now().UnixNano()
	h.s.out.Emit(p) // the runtime counts the stream's packets and bytes
}

// OnFCUnpublish and OnDeleteStream are a publisher's orderly end. Its
// stream ends (or waits out reconnect_grace) now; the connection is left
// for the client to close, as nginx-rtmp does: a client that reads the
// server's close as an error (GStreamer's rtmp2sink) then ends cleanly,
// and go-rtmp never decodes rtmp2sink's deleteStream, which it cannot
// (it would close the connection as failed).
func (h *handler) OnFCUnpublish(uint32, *rtmpmsg.NetStreamFCUnpublish) error {
	h.unpublished()
	return nil
}

func (h *handler) OnDeleteStream(uint32, *rtmpmsg.NetStreamDeleteStream) error {
	h.unpublished()
	return nil
}

func (h *handler) unpublished() {
	if h.stream == nil {
		return // not publishing: a stray command
	}
	h.OnClose()
	h.c.awaitClose(unpublishWait)
}

// OnClose runs when the connection ends for any reason, refused publishers included.
func (h *handler) OnClose() {
	if h.stream == nil {
		return
	}
	st := h.stream
	h.stream = nil
	if h.unregister != nil {
		h.unregister()
	}
	// A kicked publisher (control API) was stopped on purpose: its stream
	// ends now rather than waiting for it to come back.
	if c := h.c.cause.Load(); (c == nil || *c != "kicked") && h.s.hold(st.Name, h.tl) {
		h.s.env.Log.Info("publisher gone; stream held for reconnect_grace", "stream", st.Name, "grace", time.Duration(h.s.grace.Load()))
		return
	}
	h.s.release(st.Name)
	h.s.end(st, "publisher gone")
}
