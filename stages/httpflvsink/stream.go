package httpflvsink

import (
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
)

// stream is one served stream: its viewers, its in-band init tags and the
// tags since its last keyframe. Run writes it; viewers join and leave under mu.
type stream struct {
	s  *Stage
	cs *core.Stream

	mu       sync.Mutex
	viewers  []*viewer
	init     [3]*tagRef // in-band onMetaData, video and audio sequence headers
	gop      []*tagRef  // from the last keyframe on; nil entries never
	gopBytes int
	gopOK    bool // gop starts at a keyframe and is complete
	hasVideo bool
	hasAudio bool
	ended    bool
}

func newStream(s *Stage, cs *core.Stream) *stream { return &stream{s: s, cs: cs} }

// viewer is one HTTP response being fed.
type viewer struct {
	ch      chan *tagRef // bounded; Run never blocks on it
	conn    net.Conn
	waitKey bool // skip media until a keyframe (no GOP to start from)
}

// push hands r to the GOP cache and every viewer; Run's reference ends here.
func (st *stream) push(r *tagRef) {
	typ := r.p.Type
	kind := flv.InitKindOf(typ, r.b[flv.HeaderSize:len(r.p.Data)-4])
	st.mu.Lock()
	switch typ {
	case core.TagVideo:
		st.hasVideo = true
	case core.TagAudio:
		st.hasAudio = true
	}
	if kind != flv.InitNone {
		if old := st.init[kind-1]; old != nil {
			old.release()
		}
		r.refs.Add(1)
		st.init[kind-1] = r
	} else if st.s.cfg.GOPCache {
		st.cache(r)
	}
	if n := len(st.viewers); n > 0 {
		r.refs.Add(int32(n))
		kept := st.viewers[:0]
		for _, v := range st.viewers {
			if v.waitKey && kind == flv.InitNone && typ != core.TagScript {
				if !r.key {
					r.release()
					kept = append(kept, v)
					continue
				}
				v.waitKey = false
			}
			select {
			case v.ch <- r:
				kept = append(kept, v)
			default:
				r.release()
				st.s.mSlow.Inc()
				close(v.ch)
				_ = v.conn.Close()
			}
		}
		clear(st.viewers[len(kept):])
		st.viewers = kept
	}
	st.mu.Unlock()
	r.release()
}

// cache keeps r in the current GOP (called with mu held).
func (st *stream) cache(r *tagRef) {
	if r.key {
		st.dropGOP()
		st.gopOK = true
	}
	if !st.gopOK {
		return
	}
	st.gopBytes += len(r.b)
	if st.gopBytes > st.s.cfg.GOPMaxBytes {
		st.dropGOP() // too long to cache: new viewers wait for the next keyframe
		return
	}
	r.refs.Add(1)
	st.gop = append(st.gop, r)
}

func (st *stream) dropGOP() {
	for i, r := range st.gop {
		r.release()
		st.gop[i] = nil
	}
	st.gop = st.gop[:0]
	st.gopBytes = 0
	st.gopOK = false
}

// join registers v and returns what it must be sent first: the FLV header,
// the init tags and the cached GOP. refs are held for the caller.
func (st *stream) join(v *viewer) (bufs [][]byte, refs []*tagRef, ok bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ended {
		return nil, nil, false
	}
	hasAudio, hasVideo := st.hasAudio || st.init[flv.InitAudio-1] != nil, st.hasVideo || st.init[flv.InitVideo-1] != nil
	fallback := st.cs.Init()
	if fallback != nil {
		hasAudio = hasAudio || fallback.Audio != nil
		hasVideo = hasVideo || fallback.Video != nil
	}
	if !hasAudio && !hasVideo {
		hasAudio, hasVideo = true, true
	}
	bufs = append(bufs, flv.FileHeader(hasAudio, hasVideo))
	for i, r := range st.init {
		if r != nil {
			r.refs.Add(1)
			refs = append(refs, r)
			bufs = append(bufs, r.b)
			continue
		}
		// A stream whose start was relayed before this edge joined brings
		// its init tags as stream metadata instead.
		var tag []byte
		if fallback != nil {
			tag = [3][]byte{fallback.Metadata, fallback.Video, fallback.Audio}[i]
		}
		if len(tag) > 0 {
			bufs = append(bufs, flv.AppendPreviousTagSize(append([]byte(nil), tag...), len(tag)))
		}
	}
	if st.s.cfg.GOPCache && st.gopOK && len(st.gop) > 0 {
		for _, r := range st.gop {
			r.refs.Add(1)
			refs = append(refs, r)
			bufs = append(bufs, r.b)
		}
	} else {
		v.waitKey = st.hasVideo
	}
	st.viewers = append(st.viewers, v)
	return bufs, refs, true
}

// leave removes v if Run has not already; afterwards nothing is sent to v.ch.
func (st *stream) leave(v *viewer) {
	st.mu.Lock()
	for i, w := range st.viewers {
		if w == v {
			last := len(st.viewers) - 1
			st.viewers[i] = st.viewers[last]
			st.viewers[last] = nil
			st.viewers = st.viewers[:last]
			break
		}
	}
	st.mu.Unlock()
}

// finish ends the stream: viewers get what is queued, then their response ends.
func (st *stream) finish() {
	st.mu.Lock()
	st.ended = true
	for i, v := range st.viewers {
		close(v.ch)
		st.viewers[i] = nil
	}
	st.viewers = nil
	st.dropGOP()
	for i, r := range st.init {
		if r != nil {
			r.release()
			st.init[i] = nil
		}
	}
	st.mu.Unlock()
}

// kickAll disconnects every viewer at once (shutdown).
func (st *stream) kickAll() {
	st.mu.Lock()
	for i, v := range st.viewers {
		close(v.ch)
		_ = v.conn.Close()
		st.viewers[i] = nil
	}
	st.viewers = nil
	st.mu.Unlock()
}

const responseHead = "HTTP/1.1 200 OK\r\n" +
	"Content-Type: video/x-flv\r\n" +
	"Access-Control-Allow-Origin: *\r\n" +
	"Cache-Control: no-cache, no-store\r\n" +
	"Connection: close\r\n\r\n"

const notFoundHead = "HTTP/1.1 404 Not Found\r\n" +
	"Content-Length: 0\r\n" +
	"Access-Control-Allow-Origin: *\r\n" +
	"Connection: close\r\n\r\n"

// batch limits of one coalesced write.
const (
	batchTags  = 256
	batchBytes = 1 << 20
)

// serveViewer takes the connection over and writes the stream to it, several
// queued tags per writev, until the stream ends, the viewer goes or is shed.
func (s *Stage) serveViewer(w http.ResponseWriter, st *stream, remote string) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "cannot stream on this connection", http.StatusInternalServerError)
		return
	}
	defer conn.Close()
	v := &viewer{ch: make(chan *tagRef, s.cfg.ViewerQueue), conn: conn}
	first, held, ok := st.join(v)
	if !ok {
		_, _ = conn.Write([]byte(notFoundHead))
		return
	}
	s.mViewers.Inc()
	s.mServed.Inc()
	s.env.Log.Debug("viewer joined", "stream", st.cs.Name, "remote", remote)
	defer func() {
		st.leave(v)
		for drained := false; !drained; {
			select {
			case r, open := <-v.ch:
				if !open {
					drained = true
				} else {
					r.release()
				}
			default:
				drained = true
			}
		}
		s.mViewers.Dec()
		s.env.Log.Debug("viewer left", "stream", st.cs.Name, "remote", remote)
	}()

	bufs := append([][]byte{[]byte(responseHead)}, first...)
	ok = s.write(conn, bufs, held)
	bufs = make([][]byte, 0, batchTags)
	held = make([]*tagRef, 0, batchTags)
	for ok {
		r, open := <-v.ch
		if !open {
			return // stream ended (or shed): close the response
		}
		bufs, held = append(bufs[:0], r.b), append(held[:0], r)
		size := len(r.b)
	more:
		for len(held) < batchTags && size < batchBytes {
			select {
			case r, open = <-v.ch:
				if !open {
					break more
				}
				bufs, held = append(bufs, r.b), append(held, r)
				size += len(r.b)
			default:
				break more
			}
		}
		ok = s.write(conn, bufs, held) && open
	}
}

// write sends bufs in one writev and releases held.
func (s *Stage) write(conn net.Conn, bufs [][]byte, held []*tagRef) bool {
	_ = conn.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	nb := net.Buffers(bufs)
	n, err := nb.WriteTo(conn)
	s.mBytes.Add(float64(n))
	for i, r := range held {
		r.release()
		held[i] = nil
	}
	clear(bufs)
	return err == nil
}
