package hlssink

import (
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mediapipe/mediapipe/core"
)

// An HLS viewer is no connection: a player fetches playlists and segments,
// over one connection or several, and simply stops asking when it leaves.
// So the control API's HLS "viewer" is a client IP that fetched any file of
// a stream within the last sessionWindow (or three segment_min_duration, if
// longer): its play notice comes with its first request, its stop once it
// has been quiet that long (or the stream ended). Kicking it refuses that
// IP's requests for that stream (403) for kickBan, which also refuses other
// players behind the same address (a NAT).
const (
	sessionWindow = 10 * time.Second
	kickBan       = 30 * time.Second
	maxSessions   = 10000 // per stage; clients beyond are served but not listed
)

type sessionKey struct{ ip, stream string }

type hlsSession struct {
	last   atomic.Int64 // unix ns of the last request
	bytes  atomic.Uint64
	remove func()
}

type sessions struct {
	s      *Stage
	window time.Duration
	mu     sync.Mutex
	m      map[sessionKey]*hlsSession
	banned map[sessionKey]time.Time // until when
	closed bool                     // the stage has stopped: no new sessions
}

func newSessions(s *Stage) *sessions {
	return &sessions{s: s, window: max(sessionWindow, 3*s.cfg.SegmentMinDuration),
		m: map[sessionKey]*hlsSession{}, banned: map[sessionKey]time.Time{}}
}

// touch records a request of remote for stream at now and returns the
// session's byte counter (nil when not tracked); ok false: the client was
// kicked and is refused for now. A request for a stream that has ended
// (its last playlist is still served) starts no session: a player polling
// it is no new viewer, and would be a play and a stop per poll.
func (ss *sessions) touch(remote, stream string, now time.Time, live bool) (bytes *atomic.Uint64, ok bool) {
	ip, _, err := net.SplitHostPort(remote)
	if err != nil {
		ip = remote
	}
	k := sessionKey{ip, stream}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if until, b := ss.banned[k]; b {
		if now.Before(until) {
			return nil, false
		}
		delete(ss.banned, k)
	}
	hs := ss.m[k]
	if hs == nil {
		if len(ss.m) >= maxSessions || ss.closed || !live {
			return nil, true
		}
		hs = &hlsSession{}
		ss.m[k] = hs
		// Add publishes play: under ss.mu, which only this stage's
		// requests and sweeps take, and Publish never waits.
		hs.remove = ss.s.env.Sessions.Add(&core.Session{
			Kind: core.Viewer, Stream: stream, Protocol: "hls", Client: ip,
			Pipeline: ss.s.env.Pipeline, Stage: ss.s.env.Index, Since: now,
			Bytes: hs.bytes.Load,
			Kick:  func() { ss.kick(k) },
		})
	}
	hs.last.Store(now.UnixNano())
	return &hs.bytes, true
}

// kick ends k's session and refuses its requests for kickBan.
func (ss *sessions) kick(k sessionKey) {
	ss.mu.Lock()
	if len(ss.banned) < maxSessions {
		ss.banned[k] = time.Now().Add(kickBan)
	}
	hs := ss.m[k]
	delete(ss.m, k)
	ss.mu.Unlock()
	ss.s.auth.Forget(k.stream) // its next request asks auth_url again
	if hs != nil {
		ss.s.env.Metrics.Counter("viewers_kicked").Inc()
		hs.remove()
	}
}

// sweep ends the sessions quiet for the window or whose stream ended
// (every one when all), and
// forgets bans that are over.
func (ss *sessions) sweep(now time.Time, all bool) {
	live := map[string]bool{}
	ss.s.mu.Lock()
	for name, e := range ss.s.byName {
		if !e.endedAt() {
			live[name] = true
		}
	}
	ss.s.mu.Unlock()
	var gone []*hlsSession
	ss.mu.Lock()
	ss.closed = ss.closed || all // a request still in its handler registers nothing after the last sweep
	for k, hs := range ss.m {
		if all || !live[k.stream] || now.Sub(time.Unix(0, hs.last.Load())) > ss.window {
			delete(ss.m, k)
			gone = append(gone, hs)
		}
	}
	for k, until := range ss.banned {
		if !now.Before(until) {
			delete(ss.banned, k)
		}
	}
	ss.mu.Unlock()
	for _, hs := range gone {
		hs.remove()
	}
}

// countingWriter adds what a response writes to a session's bytes.
type countingWriter struct {
	http.ResponseWriter
	n *atomic.Uint64
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n.Add(uint64(n))
	return n, err
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (c countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
