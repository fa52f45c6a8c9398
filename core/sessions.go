package core

import (
	"crypto/rand"
	"encoding/hex"
	"slices"
	"strings"
	"sync"
	"time"
)

// Session kinds.
const (
	Publisher = "publisher"
	Viewer    = "viewer"
)

// Notice names: what a Bus carries and what [[hook]] tables may ask for.
const (
	NoticePublish     = "publish"      // a publisher was admitted (its session registered)
	NoticeUnpublish   = "unpublish"    // the publisher left (its session removed)
	NoticePlay        = "play"         // a viewer was admitted
	NoticeStop        = "stop"         // the viewer left or was cut
	NoticeRecordDone  = "record_done"  // a recording file was closed (Path)
	NoticeStreamStart = "stream_start" // a pipeline's source started a stream
	NoticeStreamEnd   = "stream_end"   // … and ended it
)

// NoticeNames lists every notice name, for validating what a hook asks for.
var NoticeNames = []string{NoticePublish, NoticeUnpublish, NoticePlay, NoticeStop, NoticeRecordDone, NoticeStreamStart, NoticeStreamEnd}

// Notice is one thing that happened that operators may want to hear about:
// a client came or went, a stream started or ended, a recording closed.
// Fields that do not apply are empty.
type Notice struct {
	Name     string    `json:"event"`
	Time     time.Time `json:"time"`
	Stream   string    `json:"stream,omitempty"` // "APP/KEY"
	Client   string    `json:"client,omitempty"` // "IP:PORT" (HLS viewers: "IP")
	Protocol string    `json:"protocol,omitempty"`
	Pipeline string    `json:"pipeline,omitempty"`
	Stage    int       `json:"stage,omitempty"`
	ID       string    `json:"id,omitempty"`   // the session's id
	Path     string    `json:"path,omitempty"` // record_done: the file
}

// Bus hands notices to its subscribers. Publish calls each subscriber
// synchronously on the caller's goroutine, so a subscriber must not block
// (the hooks only enqueue). Publishing is for connects, disconnects and
// stream starts and ends, never per packet. A nil *Bus discards.
type Bus struct {
	mu   sync.RWMutex
	subs []*subscriber
}

type subscriber struct{ f func(Notice) }

// NewBus returns a bus without subscribers.
func NewBus() *Bus { return &Bus{} }

// Publish stamps n's time when unset and hands it to every subscriber.
func (b *Bus) Publish(n Notice) {
	if b == nil {
		return
	}
	if n.Time.IsZero() {
		n.Time = time.Now()
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, s := range b.subs {
		s.f(n)
	}
}

// Subscribe adds f; the returned func removes it.
func (b *Bus) Subscribe(f func(Notice)) (cancel func()) {
	s := &subscriber{f: f}
	b.mu.Lock()
	b.subs = append(b.subs, s)
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		b.subs = slices.DeleteFunc(b.subs, func(x *subscriber) bool { return x == s })
		b.mu.Unlock()
	}
}

// Session is one publisher or viewer a stage serves, as the control API
// shows it and can cut it. The funcs are read only when the API asks, so
// the per-packet path keeps its own counters and never touches the registry.
type Session struct {
	ID       string // set by Sessions.Add: short, unique, opaque
	Kind     string // Publisher or Viewer
	Stream   string // "APP/KEY"
	Protocol string // "rtmp", "http-flv", "hls"
	Client   string // "IP:PORT" ("IP" for HLS)
	Pipeline string
	Stage    int
	Since    time.Time

	Bytes func() uint64 // bytes received (publisher) or sent (viewer) so far; nil: unknown
	Queue func() int    // a viewer's queue depth (tags waiting); nil: none
	Kick  func()        // disconnects the client; must not block for long
}

// Sessions is the registry of the process's publishers and viewers, one per
// runtime, shared by every pipeline and kept across reloads. Adding and
// removing a session publishes its notice on the bus. A nil *Sessions
// registers nothing (stages built without a runtime).
type Sessions struct {
	bus *Bus
	mu  sync.Mutex
	m   map[string]*Session
	// The bytes of viewers that left, by pipeline and stream, so a
	// stream's bytes out count on across its viewers (per-stream
	// metrics); forgotten when the stream ends (ForgetStream).
	retired map[StreamKey]uint64
	live    func(StreamKey) bool // whether the pipeline still carries the stream; nil: always
}

// SetLive tells r how to know whether a pipeline still carries a stream, so
// the bytes of a viewer leaving after its stream ended are not kept.
func (r *Sessions) SetLive(live func(StreamKey) bool) {
	r.mu.Lock()
	r.live = live
	r.mu.Unlock()
}

// StreamKey names a stream as one pipeline carries it.
type StreamKey struct{ Pipeline, Stream string }

// NewSessions returns an empty registry publishing on bus (nil: nowhere).
func NewSessions(bus *Bus) *Sessions { return &Sessions{bus: bus, m: map[string]*Session{}} }

// Add registers s (ID and, when zero, Since are set), publishes publish or
// play, and returns the func that removes it again and publishes unpublish
// or stop; calling that more than once removes it once.
func (r *Sessions) Add(s *Session) (remove func()) {
	if r == nil {
		return func() {}
	}
	if s.Since.IsZero() {
		s.Since = time.Now()
	}
	r.mu.Lock()
	for {
		s.ID = newSessionID()
		if _, dup := r.m[s.ID]; !dup {
			break
		}
	}
	r.m[s.ID] = s
	r.mu.Unlock()
	name := NoticePlay
	if s.Kind == Publisher {
		name = NoticePublish
	}
	r.bus.Publish(s.notice(name))
	var once sync.Once
	return func() {
		once.Do(func() {
			var last uint64
			key := StreamKey{s.Pipeline, s.Stream}
			if s.Kind == Viewer && s.Bytes != nil {
				last = s.Bytes() // outside r.mu: it takes the stage's own lock
			}
			r.mu.Lock()
			live := r.live
			r.mu.Unlock()
			if live != nil && !live(key) {
				last = 0 // the stream has ended: nothing to count on for
			}
			r.mu.Lock()
			delete(r.m, s.ID)
			if last > 0 {
				if r.retired == nil {
					r.retired = map[StreamKey]uint64{}
				}
				r.retired[key] += last
			}
			r.mu.Unlock()
			name := NoticeStop
			if s.Kind == Publisher {
				name = NoticeUnpublish
			}
			r.bus.Publish(s.notice(name))
		})
	}
}

func (s *Session) notice(name string) Notice {
	return Notice{Name: name, Stream: s.Stream, Client: s.Client, Protocol: s.Protocol,
		Pipeline: s.Pipeline, Stage: s.Stage, ID: s.ID}
}

// Get returns the session with id, or nil.
func (r *Sessions) Get(id string) *Session {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m[id]
}

// List returns the sessions that match: kind and stream "" match any. The
// list is sorted by Since, then ID.
func (r *Sessions) List(kind, stream string) []*Session {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	out := make([]*Session, 0, len(r.m))
	for _, s := range r.m {
		if (kind == "" || s.Kind == kind) && (stream == "" || s.Stream == stream) {
			out = append(out, s)
		}
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b *Session) int {
		if c := a.Since.Compare(b.Since); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// ViewerTotals returns, for each pipeline and stream with viewers now or
// bytes sent to viewers since it started, its viewers and the bytes sent
// to them (those that left included).
func (r *Sessions) ViewerTotals() map[StreamKey]ViewerTotal {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	live := make([]*Session, 0, len(r.m))
	out := make(map[StreamKey]ViewerTotal, len(r.retired))
	for k, b := range r.retired {
		out[k] = ViewerTotal{Bytes: b}
	}
	for _, s := range r.m {
		if s.Kind == Viewer {
			live = append(live, s)
		}
	}
	r.mu.Unlock()
	for _, s := range live {
		k := StreamKey{s.Pipeline, s.Stream}
		t := out[k]
		t.Viewers++
		if s.Bytes != nil {
			t.Bytes += s.Bytes()
		}
		out[k] = t
	}
	return out
}

// ViewerTotal is one stream's audience in one pipeline.
type ViewerTotal struct {
	Viewers int
	Bytes   uint64
}

// ForgetStream drops what is kept of the viewers that left stream in
// pipeline, once the pipeline no longer carries it: the per-stream series
// end with the stream, so their number stays bounded by the live streams.
func (r *Sessions) ForgetStream(pipeline, stream string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	delete(r.retired, StreamKey{pipeline, stream})
	r.mu.Unlock()
}

// newSessionID is 12 hex digits of randomness: short enough to type, and
// not guessable from another client's id.
func newSessionID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
