package hlssink

import (
	"bytes"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/bluenviron/gohlslib/v2"
	"github.com/bluenviron/gohlslib/v2/pkg/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/stages/internal/streaminfo"
)

// Viewer counting: a viewer is a client connection that fetched one of the
// stream's playlists in the last viewerWindow (players poll at least once
// a target duration); at most maxTracked are told apart per stream.
const (
	viewerWindow = 5 * time.Second
	maxTracked   = 10000
)

// segmentMaxSize bounds one segment (a stream that sends no keyframe for
// long makes long segments): with segment_count it bounds a stream's
// memory. 32 MiB is 30 s at 8 Mbit/s.
const segmentMaxSize = 32 << 20

// tracksWait is how long, in stream time, a stream that announced a track
// (onMetaData, or a tag of it) is given for that track's sequence header
// before its muxer starts without it.
const tracksWait = 2000 // ms

// muxer is one gohlslib muxer of a stream and the tracks it was started with.
type muxer struct {
	mux          *gohlslib.Muxer
	video, audio *gohlslib.Track
	sampleRate   int
	vcfg         *videoConfig // the video track's parameters, never changed
	playlists    []string     // media playlist files (not index.m3u8)
}

// entry is a stream as HTTP requests find it by name: its current muxer,
// and once it ended, its final playlists.
type entry struct {
	name string
	info *streaminfo.Tracker

	mu          sync.Mutex
	m           *muxer        // nil until the stream's tracks are known
	changed     chan struct{} // closed (and replaced) when m changes or the stream ends
	ended       bool
	closed      bool
	lingerUntil time.Time
	final       map[string][]byte // once ended: file -> playlist with #EXT-X-ENDLIST
	viewers     map[string]time.Time
}

func newEntry(name string, info *streaminfo.Tracker) *entry {
	return &entry{name: name, info: info, changed: make(chan struct{}), viewers: map[string]time.Time{}}
}

func (e *entry) state() (m *muxer, changed <-chan struct{}, ended bool, final map[string][]byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.m, e.changed, e.ended, e.final
}

func (e *entry) current() (*muxer, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.m, e.ended
}

func (e *entry) endedAt() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ended
}

// notify wakes the requests waiting on e; under e.mu.
func (e *entry) notify() {
	close(e.changed)
	e.changed = make(chan struct{})
}

// setMuxer makes m the stream's muxer and closes the one it replaces.
func (e *entry) setMuxer(m *muxer) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		m.mux.Close()
		return
	}
	old := e.m
	e.m = m
	e.notify()
	e.mu.Unlock()
	if old != nil {
		old.mux.Close()
	}
}

// finish marks the stream ended: final is served from now on, the muxer
// (its segments) until lingerUntil. Without final playlists nothing is
// left to serve and the muxer closes now.
func (e *entry) finish(final map[string][]byte, lingerUntil time.Time) {
	e.mu.Lock()
	e.ended, e.final, e.lingerUntil = true, final, lingerUntil
	e.notify()
	m := e.m
	e.mu.Unlock()
	if final == nil && m != nil {
		m.mux.Close()
	}
}

// close ends e for good: its muxer closes, which ends the requests
// gohlslib holds.
func (e *entry) close() {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.closed, e.ended = true, true
	e.notify()
	m := e.m
	e.mu.Unlock()
	if m != nil {
		m.mux.Close()
	}
}

func (e *entry) sawViewer(conn string, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.viewers[conn]; !ok && len(e.viewers) >= maxTracked {
		e.prune(now)
		if len(e.viewers) >= maxTracked {
			return // the count saturates
		}
	}
	e.viewers[conn] = now
}

func (e *entry) viewerCount(now time.Time) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.prune(now)
	return len(e.viewers)
}

func (e *entry) prune(now time.Time) {
	for k, t := range e.viewers {
		if now.Sub(t) > viewerWindow {
			delete(e.viewers, k)
		}
	}
}

// stream is Run's own state of one live stream: its codec parameters and
// the muxer they started.
type stream struct {
	s  *Stage
	e  *entry
	cs *core.Stream

	initSeen *core.InitTags // the stream's init tags last taken
	metaSeen bool
	detached bool // a newer stream took over the name: this one is not served

	wantVideo, wantAudio bool // announced by onMetaData or seen
	videoSH, audioSH     []byte
	video                *videoConfig
	audio                *mpeg4audio.AudioSpecificConfig
	firstSH              uint32 // stream time of the first sequence header
	haveSH               bool
	failed               bool // the muxer would not start with these parameters

	m      *muxer
	gotKey bool
	nalus  [][]byte

	// What closing the last segment at the stream's end takes (closeLast).
	lastPTS, frameDur, segStart int64 // 90 kHz
	lastIDR                     []byte
}

func newStream(s *Stage, e *entry, cs *core.Stream) *stream {
	return &stream{s: s, e: e, cs: cs}
}

// tag takes one FLV tag; p stays the caller's.
func (st *stream) tag(p *core.Packet) {
	if st.m == nil && (st.video == nil || st.audio == nil) {
		st.useInitTags()
	}
	st.take(p.Data)
}

// take handles one whole FLV tag; nothing of it is kept.
func (st *stream) take(tag []byte) {
	s := st.s
	h, err := flv.Check(tag, 0)
	if err != nil {
		s.mBadTag.Inc()
		return
	}
	now := time.Now()
	st.e.info.Observe(tag, now)
	body := tag[flv.HeaderSize:]
	switch h.Type {
	case flv.TypeScript:
		if flv.IsOnMetaData(body) {
			st.metaSeen = true
			st.wantVideo = st.wantVideo || bytes.Contains(body, []byte("videocodecid"))
			st.wantAudio = st.wantAudio || bytes.Contains(body, []byte("audiocodecid"))
		}
	case flv.TypeVideo:
		st.videoTag(h.Timestamp, body, now)
	case flv.TypeAudio:
		st.audioTag(h.Timestamp, body, now)
	default:
		s.mBadTag.Inc()
	}
}

// useInitTags takes the sequence headers a stream brought as metadata
// (core.Stream.Init: an edge that joined after the stream started gets
// them from the cloud, not in band) for the tracks it has none of yet.
func (st *stream) useInitTags() {
	it := st.cs.Init()
	if it == nil || it == st.initSeen {
		return
	}
	st.initSeen = it
	if len(it.Metadata) > 0 && !st.metaSeen {
		st.take(it.Metadata)
	}
	if len(it.Video) > 0 && st.video == nil {
		st.take(it.Video)
	}
	if len(it.Audio) > 0 && st.audio == nil {
		st.take(it.Audio)
	}
}

func (st *stream) audioTag(ts uint32, body []byte, now time.Time) {
	s := st.s
	st.wantAudio = true
	a, ok := flv.ParseAudio(body)
	if !ok {
		s.mBadTag.Inc()
		return
	}
	if a.Codec != flv.SoundAAC {
		s.mCodec.Inc()
		return
	}
	if a.IsSequenceHeader() {
		if bytes.Equal(body, st.audioSH) {
			return
		}
		var asc mpeg4audio.AudioSpecificConfig
		if err := asc.Unmarshal(body[2:]); err != nil || asc.SampleRate <= 0 {
			s.mBadTag.Inc()
			return
		}
		st.audioSH = append(st.audioSH[:0], body...)
		st.audio = &asc
		st.configChanged(ts)
		return
	}
	st.maybeStart(ts)
	m := st.m
	if m == nil || m.audio == nil {
		s.mNoConfig.Inc()
		return
	}
	if len(body) <= 2 {
		return
	}
	// gohlslib holds fMP4 audio samples until their part is written: a
	// copy, as the packet's buffer is reused once released.
	au := bytes.Clone(body[2:])
	pts := int64(ts) * int64(m.sampleRate) / 1000
	if err := m.mux.WriteMPEG4Audio(m.audio, now, pts, [][]byte{au}); err != nil {
		st.muxError(err)
	}
}

// muxWarning is gohlslib's word that a part or segment came out longer than
// the playlist's target (frame timing in whole milliseconds does it); the
// media is served all the same.
func (st *stream) muxWarning(err error) {
	st.s.mWarn.Inc()
	st.s.env.Log.Debug("hls-sink: mux", "stream", st.e.name, "warning", err)
}

func (st *stream) muxError(err error) {
	// counted, and logged at most once in a while: a broken stream errs per frame
	st.s.mMuxErr.Refused("hls-sink: mux", "stream", st.e.name, "err", err)
}

// configChanged follows a new sequence header: a running muxer restarts
// with the new parameters (a new playlist), or one starts if the stream's
// tracks are now all known.
func (st *stream) configChanged(ts uint32) {
	if !st.haveSH {
		st.haveSH, st.firstSH = true, ts
	}
	st.failed = false
	if st.m != nil {
		st.s.mRestarted.Inc()
		st.s.env.Log.Info("hls-sink: codec parameters changed; new playlist", "stream", st.e.name)
		st.startMuxer()
		return
	}
	st.maybeStart(ts)
}

// maybeStart starts the muxer once every announced track has its sequence
// header, or tracksWait after the first one with the tracks that have.
func (st *stream) maybeStart(ts uint32) {
	if st.m != nil || st.failed || (st.video == nil && st.audio == nil) {
		return
	}
	all := (st.video != nil || !st.wantVideo) && (st.audio != nil || !st.wantAudio)
	if !all && int32(ts-st.firstSH) < tracksWait {
		return
	}
	st.startMuxer()
}

func (st *stream) startMuxer() {
	s := st.s
	m := &muxer{}
	var tracks []*gohlslib.Track
	if st.video != nil {
		m.vcfg = st.video
		m.video = &gohlslib.Track{Codec: st.video.codec(), ClockRate: 90000}
		tracks = append(tracks, m.video)
	}
	if st.audio != nil {
		m.sampleRate = st.audio.SampleRate
		m.audio = &gohlslib.Track{Codec: &codecs.MPEG4Audio{Config: *st.audio}, ClockRate: st.audio.SampleRate}
		tracks = append(tracks, m.audio)
	}
	m.mux = &gohlslib.Muxer{
		Tracks:             tracks,
		Variant:            variantOf(s.cfg.Variant),
		SegmentCount:       s.cfg.SegmentCount,
		SegmentMinDuration: s.cfg.SegmentMinDuration,
		PartMinDuration:    s.cfg.PartDuration,
		SegmentMaxSize:     segmentMaxSize,
		OnEncodeError:      st.muxWarning,
	}
	if err := m.mux.Start(); err != nil {
		st.failed = true
		s.mMuxErr.Inc()
		s.env.Log.Warn("hls-sink: cannot mux stream", "stream", st.e.name, "err", err)
		return
	}
	if s.cfg.Variant == "mpegts" {
		m.playlists = []string{"main_stream.m3u8"}
	} else {
		for i, t := range tracks {
			kind := "audio"
			if t == m.video {
				kind = "video"
			}
			m.playlists = append(m.playlists, kind+strconv.Itoa(i+1)+"_stream.m3u8")
		}
	}
	st.m, st.gotKey, st.lastIDR = m, false, nil
	st.e.setMuxer(m)
}

func variantOf(v string) gohlslib.MuxerVariant {
	switch v {
	case "fmp4":
		return gohlslib.MuxerVariantFMP4
	case "mpegts":
		return gohlslib.MuxerVariantMPEGTS
	}
	return gohlslib.MuxerVariantLowLatency
}

// finish ends the stream: its playlists, as they are now and with
// #EXT-X-ENDLIST, are what pollers get from now on.
func (st *stream) finish(now time.Time) {
	var final map[string][]byte
	if st.m != nil {
		st.closeLast()
		final = finalPlaylists(st.s, st.m)
	}
	st.e.finish(final, now.Add(endLinger))
}

// snapshotWait bounds the wait for a playlist at a stream's end: gohlslib
// answers at once when the stream has a segment, and holds the request
// until it has one otherwise.
const snapshotWait = 200 * time.Millisecond

// finalPlaylists asks the muxer for its playlists and marks them ended;
// nil when it has none yet.
func finalPlaylists(s *Stage, m *muxer) map[string][]byte {
	final := map[string][]byte{}
	for _, file := range append([]string{"index.m3u8"}, m.playlists...) {
		body, code, ok := s.fetch(m, file, snapshotWait)
		if !ok || code != http.StatusOK {
			return nil
		}
		if file != "index.m3u8" {
			body = endPlaylist(body)
		}
		final[file] = body
	}
	return final
}

// fetch runs a GET of file on m, giving up after wait; the request it
// started ends when the muxer has the answer or closes.
func (s *Stage) fetch(m *muxer, file string, wait time.Duration) ([]byte, int, bool) {
	r, err := http.NewRequest(http.MethodGet, "/"+file, nil)
	if err != nil {
		return nil, 0, false
	}
	res := make(chan *bufWriter, 1)
	s.hwg.Add(1)
	go func() {
		defer s.hwg.Done()
		bw := newBufWriter()
		m.mux.Handle(bw, r)
		res <- bw
	}()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case bw := <-res:
		return bw.buf.Bytes(), bw.status(), true
	case <-t.C:
		return nil, 0, false
	}
}
