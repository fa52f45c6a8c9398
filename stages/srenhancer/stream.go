package srenhancer

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/media/h264"
)

// Non-video tags wait for the video around them, but never longer than this
// (stream time) nor more than this many: a stalled pipeline must not hold
// the audio back for good.
const (
	maxHoldTags = 4096
	holdSlackMs = 3000
)

// frameMeta is what the stage keeps of a video frame while ffmpeg works on it.
type frameMeta struct {
	pts     int64 // presentation time in ms: timestamp + composition offset
	key     bool
	ingest  int64
	arrived int64 // wall time (UnixNano) the frame entered the process (or this stage, if unknown)
	gopMs   int64 // keyframes: ms since the previous keyframe, 0 while unknown
}

// item travels on a stream's feed queue: a frame, or (p == nil) a new
// decoder configuration.
type item struct {
	p             *core.Packet
	meta          frameMeta
	record        []byte // AVC configuration record
	width, height int    // from its SPS
}

// streamState is one stream's state. The Run goroutine owns the fields above
// mu; the feeder goroutine owns the video pipe.
type streamState struct {
	s   *stage
	st  *core.Stream
	out core.Output
	ctx context.Context

	feedQ       chan item
	feederDone  chan struct{}
	pipe        atomic.Pointer[videoPipe] // the feeder's current pipe, for finish's last resort
	record      []byte                    // current AVC configuration record
	waitKey     bool
	loggedCodec bool
	lastKeyPts  int64 // -1 before the first keyframe

	mu        sync.Mutex // orders emission: held tags (Run) against video (encoder reader)
	hold      []*core.Packet
	inflight  int   // video frames accepted and not yet emitted or written off
	newest    int64 // newest non-video timestamp seen
	metadata  []byte
	videoInit []byte
}

func newStreamState(ctx context.Context, s *stage, st *core.Stream, out core.Output) *streamState {
	ss := &streamState{
		s: s, st: st, out: out, ctx: ctx,
		feedQ:      make(chan item, s.cfg.QueueFrames),
		feederDone: make(chan struct{}),
		waitKey:    true,
		lastKeyPts: -1,
	}
	go ss.feeder()
	s.env.Log.Info("stream start", "stream", st.Name, "backend", s.cfg.Backend, "scale", s.cfg.Scale)
	return ss
}

// handle takes one data packet of the stream (Run goroutine).
func (ss *streamState) handle(p *core.Packet) {
	if len(p.Data) < flv.HeaderSize {
		ss.pass(p)
		return
	}
	body := p.Data[flv.HeaderSize:]
	switch p.Type {
	case flv.TypeVideo:
		ss.handleVideo(p, body)
	case flv.TypeScript:
		if patchMetadata(body, ss.s.cfg.Scale) {
			ss.mu.Lock()
			ss.metadata = append(ss.metadata[:0:0], p.Data...)
			ss.mu.Unlock()
			ss.publishInit()
		}
		ss.pass(p)
	case flv.TypeAudio:
		if a, ok := flv.ParseAudio(body); ok && a.IsSequenceHeader() {
			ss.pass(p)
			ss.publishInit() // upstream replaced the init tags: put our video and metadata back
			return
		}
		ss.pass(p)
	default:
		ss.pass(p)
	}
}

func (ss *streamState) handleVideo(p *core.Packet, body []byte) {
	vi, ok := flv.ParseVideo(body)
	if !ok || vi.Codec != flv.CodecAVC || vi.Enhanced {
		if !ss.loggedCodec {
			ss.loggedCodec = true
			ss.s.env.Log.Warn("video is not H.264 in classic FLV: passed through unenhanced", "stream", ss.st.Name, "codec", vi.Codec)
		}
		ss.pass(p)
		return
	}
	switch vi.PacketType {
	case flv.AVCSequenceHeader:
		rec := body[5:]
		if bytes.Equal(rec, ss.record) {
			p.Release()
			return
		}
		sps, _, err := h264.ConfigSize(rec)
		if err != nil {
			ss.s.env.Log.Warn("unreadable AVC sequence header: video dropped until a good one", "stream", ss.st.Name, "err", err)
			ss.record = nil
			ss.s.drops.noHeader.Inc()
			p.Release()
			return
		}
		ss.record = append([]byte(nil), rec...)
		ss.s.env.Log.Info("video size", "stream", ss.st.Name, "width", sps.Width, "height", sps.Height,
			"out_width", outSize(sps.Width, ss.s.cfg.Scale), "out_height", outSize(sps.Height, ss.s.cfg.Scale))
		ss.waitKey = true
		ss.enqueueConfig(item{record: ss.record, width: sps.Width, height: sps.Height})
		p.Release()      // the encoder's own header replaces it
		ss.publishInit() // and upstream's, describing the small picture, must not reach late joiners
	case flv.AVCEndOfSequence:
		ss.pass(p)
	default:
		if ss.record == nil {
			ss.s.drops.noHeader.Inc()
			p.Release()
			return
		}
		key := vi.FrameType == flv.FrameKey
		if ss.waitKey && !key {
			ss.s.drops.waitKey.Inc()
			p.Release()
			return
		}
		pts := int64(p.Timestamp) + int64(vi.CTS)
		meta := frameMeta{pts: pts, key: key, ingest: p.Ingest, arrived: time.Now().UnixNano()}
		if p.Ingest > 0 && p.Ingest < meta.arrived {
			meta.arrived = p.Ingest // the backend's budget counts from when the stream got here
		}
		if key {
			if ss.lastKeyPts >= 0 && pts > ss.lastKeyPts {
				meta.gopMs = pts - ss.lastKeyPts
			}
			ss.lastKeyPts = pts
		}
		ss.mu.Lock()
		ss.inflight++
		ss.mu.Unlock()
		select {
		case ss.feedQ <- item{p: p, meta: meta}:
			ss.waitKey = false
		default: // ffmpeg is behind: shed until the next keyframe so decoding stays clean
			ss.s.drops.queueFull.Inc()
			p.Release()
			ss.videoGone(1)
			ss.waitKey = true
		}
	}
}

// enqueueConfig queues a new configuration, making room by shedding queued
// frames if it must: the frames belong to the old configuration anyway.
func (ss *streamState) enqueueConfig(it item) {
	for {
		select {
		case ss.feedQ <- it:
			return
		default:
		}
		select {
		case old := <-ss.feedQ:
			if old.p != nil {
				old.p.Release()
				ss.s.drops.queueFull.Inc()
				ss.videoGone(1)
			}
		default:
		}
	}
}

// pass emits a non-video tag, or holds it while video older than it is
// still inside ffmpeg.
func (ss *streamState) pass(p *core.Packet) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ts := int64(p.Timestamp)
	if ts > ss.newest {
		ss.newest = ts
	}
	if ss.inflight == 0 && len(ss.hold) == 0 {
		ss.out.Emit(p)
		return
	}
	ss.hold = append(ss.hold, p)
	for len(ss.hold) > 0 && (len(ss.hold) > maxHoldTags || ss.newest-int64(ss.hold[0].Timestamp) > ss.s.holdMs()) {
		ss.emitHeld()
	}
}

func (s *stage) holdMs() int64 { return s.cfg.Timeout.Milliseconds() + holdSlackMs }

// emitHeld emits the oldest held tag; mu held.
func (ss *streamState) emitHeld() {
	ss.out.Emit(ss.hold[0])
	ss.hold[0] = nil
	ss.hold = ss.hold[1:]
}

// emitVideo emits the held tags older than the frame, the new sequence
// header if any, then the frame (encoder reader goroutine).
func (ss *streamState) emitVideo(header, frame *core.Packet) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ts := int64(frame.Timestamp)
	for len(ss.hold) > 0 && int64(ss.hold[0].Timestamp) < ts {
		ss.emitHeld()
	}
	if header != nil {
		ss.out.Emit(header)
	}
	ss.out.Emit(frame)
	ss.gone(1)
}

// videoGone writes off n frames that will never be emitted.
func (ss *streamState) videoGone(n int) {
	if n <= 0 {
		return
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.gone(n)
}

func (ss *streamState) gone(n int) {
	ss.inflight -= n
	if ss.inflight <= 0 {
		ss.inflight = 0
		for len(ss.hold) > 0 {
			ss.emitHeld()
		}
	}
}

// setVideoInit records the enhanced stream's sequence header for late joiners.
func (ss *streamState) setVideoInit(tag []byte) {
	ss.mu.Lock()
	ss.videoInit = tag
	ss.mu.Unlock()
	ss.publishInit()
}

// publishInit replaces the stream's init tags with ours: the patched
// metadata and the enhanced video's sequence header (upstream's describes
// the small picture, which nobody downstream receives).
func (ss *streamState) publishInit() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	n := &core.InitTags{}
	if cur := ss.st.Init(); cur != nil {
		*n = *cur
	}
	if ss.metadata != nil {
		n.Metadata = ss.metadata
	}
	n.Video = ss.videoInit
	ss.st.SetInit(n)
}

// finish drains the stream's video through ffmpeg, emits what was held and
// then end (nil: the input closed without one).
func (ss *streamState) finish(end *core.Packet) {
	close(ss.feedQ)
	timer := time.NewTimer(2 * drainTimeout)
	select {
	case <-ss.feederDone:
		timer.Stop()
	case <-timer.C: // ffmpeg neither reads nor dies: kill it so the feeder's write fails
		if p := ss.pipe.Load(); p != nil {
			p.kill("stream ended but ffmpeg did not drain")
		}
		<-ss.feederDone
	}
	ss.mu.Lock()
	for len(ss.hold) > 0 {
		ss.emitHeld()
	}
	ss.mu.Unlock()
	if end != nil {
		ss.out.Emit(end)
	}
	ss.s.env.Log.Info("stream end", "stream", ss.st.Name)
}

// feeder owns the stream's ffmpeg pipe: it starts one at a keyframe, feeds
// it, and replaces it when the configuration changes or ffmpeg fails.
func (ss *streamState) feeder() {
	defer close(ss.feederDone)
	var pipe *videoPipe
	var cfg item
	var lastErr string
	for it := range ss.feedQ {
		if it.p == nil {
			if pipe != nil {
				pipe.finish()
				pipe = nil
			}
			cfg = it
			continue
		}
		if pipe != nil && pipe.failed() {
			pipe.finish()
			pipe = nil
		}
		if pipe == nil {
			if cfg.record == nil || !it.meta.key {
				ss.s.drops.waitKey.Inc()
				it.p.Release()
				ss.videoGone(1)
				continue
			}
			var err error
			if pipe, err = startPipe(ss, cfg); err != nil {
				if msg := err.Error(); msg != lastErr { // once per distinct failure, not per keyframe
					lastErr = msg
					ss.s.env.Log.Error("ffmpeg start", "stream", ss.st.Name, "err", err)
				}
				ss.s.drops.ffmpeg.Inc()
				it.p.Release()
				ss.videoGone(1)
				continue
			}
			lastErr = ""
			ss.pipe.Store(pipe)
		}
		pipe.feed(it)
	}
	if pipe != nil {
		pipe.finish()
	}
}

// outSize is an output dimension: scale× and even, as 4:2:0 needs.
func outSize(n, scale int) int { return n * scale &^ 1 }
