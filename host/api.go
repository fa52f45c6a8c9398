package host

import (
	"net/http"
	"sync"
	"time"

	"github.com/mediapipe/mediapipe/core"
)

// rateWindow is the least time between two readings of a byte count that
// a bitrate is computed over; asked sooner, the API repeats the last rate.
const rateWindow = time.Second

// rates turns byte counters read when the API asks into bitrates, so
// nothing samples them in the background: the first reading of a counter
// gives its average since it started, later ones the rate since the
// reading before (at least rateWindow apart).
type rates struct {
	mu    sync.Mutex
	m     map[any]*rateSample
	swept time.Time // the last sweep of samples nobody asked about
}

type rateSample struct {
	at    time.Time
	bytes uint64
	rate  float64 // bits per second
}

// rate returns key's bitrate now that its counter reads bytes; since is
// when it started counting.
func (r *rates) rate(key any, bytes uint64, since, now time.Time) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[any]*rateSample{}
	}
	// Forget what has not been asked about for a while (streams and
	// sessions that ended), at most once a window: one API call asks
	// about every viewer, and a sweep per viewer would cost the square.
	if now.Sub(r.swept) >= rateWindow {
		r.swept = now
		for k, s := range r.m {
			if now.Sub(s.at) > time.Minute {
				delete(r.m, k)
			}
		}
	}
	s := r.m[key]
	switch {
	case s == nil:
		s = &rateSample{at: now, bytes: bytes}
		if d := now.Sub(since).Seconds(); d > 0 {
			s.rate = float64(bytes) * 8 / d
		}
		r.m[key] = s
	case now.Sub(s.at) >= rateWindow && bytes >= s.bytes:
		s.rate = float64(bytes-s.bytes) * 8 / now.Sub(s.at).Seconds()
		s.at, s.bytes = now, bytes
	}
	return s.rate
}

// sessionBytes reads a session's byte count (0 when it keeps none).
func sessionBytes(s *core.Session) uint64 {
	if s.Bytes == nil {
		return 0
	}
	return s.Bytes()
}

// PipelineStatus is one pipeline in /api/streams.
type PipelineStatus struct {
	Name    string         `json:"name"`
	Streams []StreamStatus `json:"streams"`
}

// Status returns what /api/streams serves: each pipeline's live streams
// with their bitrate in (what the source receives), out (what the
// pipeline's viewers are sent, summed) and viewer count.
func (rt *Runtime) Status() []PipelineStatus {
	pipes := rt.Running()
	now := time.Now()
	type audience struct {
		viewers int
		bitrate float64
	}
	byStream := map[core.StreamKey]*audience{}
	for _, v := range rt.Sessions.List(core.Viewer, "") {
		k := core.StreamKey{Pipeline: v.Pipeline, Stream: v.Stream}
		a := byStream[k]
		if a == nil {
			a = &audience{}
			byStream[k] = a
		}
		a.viewers++
		a.bitrate += rt.rates.rate(v.ID, sessionBytes(v), v.Since, now)
	}
	out := make([]PipelineStatus, 0, len(pipes))
	for _, p := range pipes {
		ps := PipelineStatus{Name: p.Name, Streams: p.Streams()}
		for i := range ps.Streams {
			st := &ps.Streams[i]
			st.BitrateIn = rt.rates.rate(st.ID, st.Bytes, st.Started, now)
			if a := byStream[core.StreamKey{Pipeline: p.Name, Stream: st.Name}]; a != nil {
				st.Viewers, st.BitrateOut = a.viewers, a.bitrate
			}
		}
		out = append(out, ps)
	}
	return out
}

// SessionStatus is a publisher or viewer in /api/streams/APP/KEY.
type SessionStatus struct {
	ID       string    `json:"id"`
	Address  string    `json:"address"`
	Protocol string    `json:"protocol"`
	Pipeline string    `json:"pipeline"`
	Stage    int       `json:"stage"`
	Since    time.Time `json:"since"`
	Bytes    uint64    `json:"bytes"`
	Bitrate  float64   `json:"bitrate"`
	Queue    *int      `json:"queue,omitempty"` // viewers: tags waiting to be sent
}

// StreamDetail is what GET /api/streams/APP/KEY serves.
type StreamDetail struct {
	Name      string           `json:"name"`
	Pipelines []StreamInPipe   `json:"pipelines"`
	Publisher *SessionStatus   `json:"publisher"`
	Viewers   []*SessionStatus `json:"viewers"`
}

// StreamInPipe is the stream as one pipeline carries it.
type StreamInPipe struct {
	Pipeline string `json:"pipeline"`
	StreamStatus
}

func (rt *Runtime) sessionStatus(s *core.Session, now time.Time) *SessionStatus {
	st := &SessionStatus{ID: s.ID, Address: s.Client, Protocol: s.Protocol, Pipeline: s.Pipeline, Stage: s.Stage,
		Since: s.Since, Bytes: sessionBytes(s)}
	st.Bitrate = rt.rates.rate(s.ID, st.Bytes, s.Since, now)
	if s.Queue != nil {
		q := s.Queue()
		st.Queue = &q
	}
	return st
}

// Stream returns name's detail, or nil when no pipeline carries it and no
// client is on it.
func (rt *Runtime) Stream(name string) *StreamDetail {
	d := &StreamDetail{Name: name, Pipelines: []StreamInPipe{}, Viewers: []*SessionStatus{}}
	for _, ps := range rt.Status() {
		for _, st := range ps.Streams {
			if st.Name == name {
				d.Pipelines = append(d.Pipelines, StreamInPipe{Pipeline: ps.Name, StreamStatus: st})
			}
		}
	}
	now := time.Now()
	if pubs := rt.Sessions.List(core.Publisher, name); len(pubs) > 0 {
		d.Publisher = rt.sessionStatus(pubs[0], now)
	}
	for _, v := range rt.Sessions.List(core.Viewer, name) {
		d.Viewers = append(d.Viewers, rt.sessionStatus(v, now))
	}
	if len(d.Pipelines) == 0 && d.Publisher == nil && len(d.Viewers) == 0 {
		return nil
	}
	return d
}

func (rt *Runtime) serveStream(w http.ResponseWriter, r *http.Request) {
	d := rt.Stream(r.PathValue("name"))
	if d == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such stream"})
		return
	}
	writeJSON(w, http.StatusOK, d)
}

// kickPublisher disconnects every publisher of the stream: 204, or 404
// when it has none.
func (rt *Runtime) kickPublisher(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	pubs := rt.Sessions.List(core.Publisher, name)
	if len(pubs) == 0 {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no publisher on this stream"})
		return
	}
	for _, s := range pubs {
		rt.kick(s)
	}
	w.WriteHeader(http.StatusNoContent)
}

// kickViewer disconnects one viewer: 204, or 404 when the id names none.
func (rt *Runtime) kickViewer(w http.ResponseWriter, r *http.Request) {
	s := rt.Sessions.Get(r.PathValue("id"))
	if s == nil || s.Kind != core.Viewer {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such viewer"})
		return
	}
	rt.kick(s)
	w.WriteHeader(http.StatusNoContent)
}

func (rt *Runtime) kick(s *core.Session) {
	rt.log.Info("kicked by the API", "kind", s.Kind, "id", s.ID, "stream", s.Stream, "client", s.Client, "pipeline", s.Pipeline)
	if s.Kick != nil {
		s.Kick()
	}
}

// PipelineInfo is one pipeline in /api/pipelines.
type PipelineInfo struct {
	Name    string      `json:"name"`
	From    string      `json:"from,omitempty"`
	State   string      `json:"state"` // running, stopped
	Streams int         `json:"streams"`
	Stages  []StageInfo `json:"stages"`
}

// StageInfo is one stage in /api/pipelines.
type StageInfo struct {
	Position   int                `json:"position"`
	Name       string             `json:"name"`
	ID         string             `json:"id,omitempty"`
	State      string             `json:"state"` // running, stopped
	PacketsIn  float64            `json:"packets_in"`
	PacketsOut float64            `json:"packets_out"`
	Drops      map[string]float64 `json:"drops"`
}

// PipelinesStatus returns what /api/pipelines serves.
func (rt *Runtime) PipelinesStatus() []PipelineInfo {
	pipes := rt.Running()
	out := make([]PipelineInfo, 0, len(pipes))
	for _, p := range pipes {
		pi := PipelineInfo{Name: p.Name, From: p.From, State: "running", Stages: []StageInfo{}}
		select {
		case <-p.done:
			pi.State = "stopped"
		default:
		}
		p.mu.Lock()
		pi.Streams = len(p.streams)
		p.mu.Unlock()
		for _, rs := range p.Stages {
			si := StageInfo{Position: rs.Env.Index, Name: rs.Env.Name, ID: rs.Config.ID, State: "running",
				PacketsIn: core.CounterValue(rs.Env.Metrics.In), PacketsOut: core.CounterValue(rs.Env.Metrics.Out),
				Drops: rs.Env.Metrics.Drops()}
			if rs.done.Load() {
				si.State = "stopped"
			}
			pi.Stages = append(pi.Stages, si)
		}
		out = append(out, pi)
	}
	return out
}
