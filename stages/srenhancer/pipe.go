package srenhancer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/sr"
	"github.com/mediapipe/mediapipe/stages/srenhancer/rawmkv"
)

// Encoder timestamps count half milliseconds; a frame's tick is 2×ms, plus
// one for a keyframe. ffmpeg's -force_key_frames expression cannot be told
// about frames one by one through a pipe, but it can read t, the frame's time
// since the first frame (a keyframe, so odd): keyframes are at even offsets.
// The encoder thus puts its IDR frames exactly where the input had keyframes.
const (
	tickNs        = 500_000
	forceKeyFrame = "expr:eq(mod(floor(t*2000+0.5),2),0)"
	drainTimeout  = 10 * time.Second
	maxDecoding   = 128    // frames the decoder may hold before the oldest is written off
	hangFrames    = 16     // frames fed without any out, beyond reordering, before a stall counts
	decodeShift   = 10_000 // ms added to the decoder's input timestamps

	// A keyframe's backend answer must come within budgetShare of a GOP
	// (the stream's own keyframe interval; defaultGOP until two keyframes
	// were seen) of the keyframe's arrival: the rest of the GOP is the
	// reserve for encoding it and the frames held behind it, so the stage
	// adds at most one GOP of latency however slow the backend is.
	defaultGOP  = time.Second
	budgetShare = 0.8
)

// videoPipe is one decoder ffmpeg and one encoder ffmpeg for one stream at
// one picture size, and the goroutines between them:
//
//	feed → decoder → (small rgb24, big yuv420p) → enhancer → encoder → encReader → emit
//
// The decoder upscales every frame with swscale (bicubic); for keyframes the
// enhancer replaces that picture with the backend's.
type videoPipe struct {
	ss            *streamState
	w, h, ow, oh  int
	dec, enc      *exec.Cmd
	decLog        *tail
	encLog        *tail
	decIn, encIn  *os.File
	bigR, smallR  *os.File
	encOut        *os.File
	bigCh         chan picture
	smallCh       chan []byte
	bigFree       chan []byte
	smallFree     chan []byte
	wg            sync.WaitGroup
	done          chan struct{} // the encoder reader ended
	closeIn       sync.Once
	bad           atomic.Bool
	prevTag       [4]byte
	mu            sync.Mutex
	decoding      []frameMeta // fed to the decoder, not out yet
	encoding      []encMeta   // fed to the encoder, not out yet, in order
	failure       error
	headerPending []byte       // the encoder's sequence header, emitted before its first frame
	progress      atomic.Int64 // UnixNano of the last frame out of the encoder
	fedSince      atomic.Int64 // frames fed since then
	stopWatch     chan struct{}
}

type encMeta struct {
	ms int64 // encoder timeline, strictly increasing
	frameMeta
}

func decoderArgs(ow, oh int) []string {
	return []string{
		"-nostdin", "-hide_banner", "-loglevel", "error",
		"-probesize", "32", "-analyzeduration", "1", "-fpsprobesize", "0", "-threads", "1",
		"-flags2", "+showall", // a picture for every frame fed, even the undecodable leading ones
		"-f", "flv", "-i", "pipe:0",
		"-filter_complex", fmt.Sprintf("[0:v]split=2[small][up];[up]scale=%d:%d:flags=bicubic,format=yuv420p[big]", ow, oh),
		"-map", "[small]", "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-flush_packets", "1", "pipe:3",
		// The big pictures come in live Matroska: each carries its frame's own
		// presentation time (-copyts, source time base), which is how
		// pictures are matched to frames even if the decoder drops one.
		"-map", "[big]", "-copyts", "-fps_mode", "passthrough", "-enc_time_base", "-1",
		"-c:v", "rawvideo", "-pix_fmt", "yuv420p",
		"-f", "matroska", "-live", "1", "-cluster_size_limit", "1", "-flush_packets", "1", "pipe:1",
	}
}

func encoderArgs(preset string, crf int) []string {
	return []string{
		"-nostdin", "-hide_banner", "-loglevel", "error",
		"-probesize", "32", "-analyzeduration", "1", "-fpsprobesize", "0",
		"-f", "matroska", "-i", "pipe:0",
		"-copyts", "-fps_mode", "passthrough", "-enc_time_base", "-1",
		"-force_key_frames", forceKeyFrame,
		"-c:v", "libx264", "-preset", preset, "-tune", "zerolatency", "-crf", strconv.Itoa(crf),
		"-g", "1000000", "-sc_threshold", "0", "-bf", "0", "-forced-idr", "1", "-pix_fmt", "yuv420p",
		"-f", "flv", "-flvflags", "no_duration_filesize", "-flush_packets", "1", "pipe:1",
	}
}

// startPipe starts both ffmpegs for cfg's picture size.
func startPipe(ss *streamState, cfg item) (_ *videoPipe, err error) {
	s := ss.s
	p := &videoPipe{
		ss: ss, w: cfg.width, h: cfg.height,
		ow: outSize(cfg.width, s.cfg.Scale), oh: outSize(cfg.height, s.cfg.Scale),
		decLog: &tail{}, encLog: &tail{},
		bigCh: make(chan picture, 4), smallCh: make(chan []byte, 4),
		bigFree: make(chan []byte, 4), smallFree: make(chan []byte, 4),
		done: make(chan struct{}), stopWatch: make(chan struct{}),
	}
	var files []*os.File // every end still open in this process, closed on failure
	defer func() {
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			for _, c := range []*exec.Cmd{p.dec, p.enc} {
				if c != nil && c.Process != nil {
					c.Process.Kill()
					c.Wait()
				}
			}
		}
	}()
	pipe := func() (r, w *os.File) {
		if err != nil {
			return nil, nil
		}
		r, w, err = os.Pipe()
		if err == nil {
			files = append(files, r, w)
		}
		return r, w
	}
	decInR, decInW := pipe()
	bigR, bigW := pipe()
	smallR, smallW := pipe()
	encInR, encInW := pipe()
	encOutR, encOutW := pipe()
	if err != nil {
		return nil, fmt.Errorf("pipes: %w", err)
	}
	p.dec = exec.Command(s.ffmpeg, decoderArgs(p.ow, p.oh)...)
	p.dec.Stdin, p.dec.Stdout, p.dec.Stderr = decInR, bigW, p.decLog
	p.dec.ExtraFiles = []*os.File{smallW} // pipe:3
	p.enc = exec.Command(s.ffmpeg, encoderArgs(s.cfg.Preset, s.cfg.CRF)...)
	p.enc.Stdin, p.enc.Stdout, p.enc.Stderr = encInR, encOutW, p.encLog
	if err = p.dec.Start(); err != nil {
		return nil, fmt.Errorf("decoder: %w", err)
	}
	if err = p.enc.Start(); err != nil {
		return nil, fmt.Errorf("encoder: %w", err)
	}
	s.restarts.Add(2)
	// The children hold their ends now.
	for _, f := range []*os.File{decInR, bigW, smallW, encInR, encOutW} {
		f.Close()
	}
	files = []*os.File{decInW, bigR, smallR, encInW, encOutR}
	p.decIn, p.bigR, p.smallR, p.encIn, p.encOut = decInW, bigR, smallR, encInW, encOutR

	// Decoder input: an FLV file of video only, starting with the stream's header.
	head := flv.FileHeader(false, true)
	seq := append([]byte{flv.FrameKey<<4 | flv.CodecAVC, flv.AVCSequenceHeader, 0, 0, 0}, cfg.record...)
	head = flv.AppendTag(head, flv.TypeVideo, 0, seq)
	head = flv.AppendPreviousTagSize(head, flv.HeaderSize+len(seq))
	if _, err = p.decIn.Write(head); err != nil {
		return nil, fmt.Errorf("decoder: %w%s", err, p.decLog.suffix())
	}
	mkv, err := rawmkv.Header(p.ow, p.oh, "I420", tickNs)
	if err != nil {
		return nil, err
	}
	if _, err = p.encIn.Write(mkv); err != nil {
		return nil, fmt.Errorf("encoder: %w%s", err, p.encLog.suffix())
	}
	p.progress.Store(time.Now().UnixNano())
	p.wg.Add(4)
	go p.watch(s.stall)
	go p.readPictures(p.bigR, p.ow*p.oh*3/2)
	go p.readFrames(p.smallR, p.w*p.h*3, p.smallCh, p.smallFree)
	go p.enhancer()
	go p.encReader()
	s.env.Log.Info("ffmpeg started", "stream", ss.st.Name, "in", fmt.Sprintf("%dx%d", p.w, p.h),
		"out", fmt.Sprintf("%dx%d", p.ow, p.oh), "decoder_pid", p.dec.Process.Pid, "encoder_pid", p.enc.Process.Pid)
	return p, nil
}

func (p *videoPipe) fail(err error) {
	p.mu.Lock()
	if p.failure == nil {
		p.failure = err
	}
	p.mu.Unlock()
	p.bad.Store(true)
}

func (p *videoPipe) failed() bool { return p.bad.Load() }

// feed writes one frame tag to the decoder (feeder goroutine). A slow
// ffmpeg blocks here, which fills the stream's queue, which sheds.
func (p *videoPipe) feed(it item) {
	defer it.p.Release()
	if p.failed() {
		p.ss.s.drops.ffmpeg.Inc()
		p.ss.videoGone(1)
		return
	}
	p.mu.Lock()
	p.decoding = append(p.decoding, it.meta)
	var lost int
	if len(p.decoding) > maxDecoding { // the decoder swallowed frames: do not grow for ever
		lost = len(p.decoding) - maxDecoding
		p.decoding = append(p.decoding[:0], p.decoding[lost:]...)
	}
	p.mu.Unlock()
	if lost > 0 {
		p.ss.s.drops.lost.Add(lost)
		p.ss.videoGone(lost)
	}
	p.fedSince.Add(1)
	// Shifted so that no presentation time is negative: Matroska would
	// move all of them, and pictures could no longer be matched to frames.
	if h, err := flv.ParseHeader(it.p.Data); err == nil {
		flv.PutHeader(it.p.Data, h.Type, h.DataSize, h.Timestamp+decodeShift)
	}
	binary.BigEndian.PutUint32(p.prevTag[:], uint32(len(it.p.Data)))
	_, err := p.decIn.Write(it.p.Data)
	if err == nil {
		_, err = p.decIn.Write(p.prevTag[:])
	}
	if err != nil {
		p.fail(fmt.Errorf("writing to the decoder: %w", err))
	}
}

// readFrames cuts one raw output of the decoder into frames.
func (p *videoPipe) readFrames(r *os.File, size int, ch, free chan []byte) {
	defer p.wg.Done()
	defer close(ch)
	for {
		var buf []byte
		select {
		case buf = <-free:
		default:
			buf = make([]byte, size)
		}
		if _, err := io.ReadFull(r, buf); err != nil {
			if err != io.EOF {
				p.fail(fmt.Errorf("decoder output: %w", err))
			}
			return
		}
		ch <- buf // the enhancer drains both channels to the end
	}
}

// picture is a decoded, upscaled picture and its presentation time.
type picture struct {
	buf []byte
	pts int64
}

// readPictures reads the decoder's Matroska output of big pictures.
func (p *videoPipe) readPictures(r *os.File, size int) {
	defer p.wg.Done()
	defer close(p.bigCh)
	mr := rawmkv.NewReader(r)
	for {
		var buf []byte
		select {
		case buf = <-p.bigFree:
		default:
			buf = make([]byte, size)
		}
		pts, err := mr.Next(buf)
		if err != nil {
			if err != io.EOF {
				p.fail(fmt.Errorf("decoder output: %w", err))
				io.Copy(io.Discard, r) // let the decoder finish
			}
			return
		}
		p.bigCh <- picture{buf: buf, pts: pts} // the enhancer drains both channels to the end
	}
}

// popDecoded takes the meta of the frame whose picture has presentation
// time pts. The decoder gives pictures in presentation order, so frames fed
// with an earlier time that are still waiting were dropped by it: they are
// written off.
func (p *videoPipe) popDecoded(pts int64) (frameMeta, bool) {
	pts -= decodeShift
	p.mu.Lock()
	var m frameMeta
	found, lost := false, 0
	kept := p.decoding[:0]
	for _, d := range p.decoding {
		switch {
		case d.pts == pts && !found:
			m, found = d, true
		case d.pts < pts:
			lost++
		default:
			kept = append(kept, d)
		}
	}
	p.decoding = kept
	p.mu.Unlock()
	if lost > 0 {
		p.ss.s.drops.lost.Add(lost)
		p.ss.videoGone(lost)
	}
	return m, found
}

// enhancer pairs each big picture with its small one, has keyframes
// super-resolved, and writes the pictures to the encoder.
func (p *videoPipe) enhancer() {
	defer p.wg.Done()
	s := p.ss.s
	var hdr []byte
	first, base, last := true, int64(0), int64(-1)
	var firstArrived, startLag int64 // the pipe's first frame's arrival, and how long ffmpeg's start held it
	writing := true
	for {
		pic, ok1 := <-p.bigCh
		big := pic.buf
		small, ok2 := <-p.smallCh
		if !ok1 || !ok2 {
			if ok1 != ok2 {
				p.fail(errors.New("decoder outputs ended unevenly"))
			}
			break
		}
		meta, ok := p.popDecoded(pic.pts)
		if !ok || !writing {
			if ok {
				s.drops.ffmpeg.Inc()
				p.ss.videoGone(1)
			} else {
				s.drops.lost.Inc() // a picture without a frame: cannot be placed
			}
			p.recycle(big, small)
			continue
		}
		if first && !meta.key {
			// A picture shown before the first keyframe (an open GOP's
			// leading B-frame) references frames never fed: garbage.
			s.drops.waitKey.Inc()
			p.ss.videoGone(1)
			p.recycle(big, small)
			continue
		}
		if first {
			base = meta.pts
			firstArrived, startLag = meta.arrived, max(time.Now().UnixNano()-meta.arrived, 0)
		}
		if meta.key {
			in := &sr.Image{Width: p.w, Height: p.h, Format: "rgb24", Pix: append([]byte(nil), small...)}
			// The builtin backend runs here and costs what the conventional
			// upscale does: there is no wait to cut short, and skipping it
			// when the stream runs late would only lose the keyframe's SR.
			var budget time.Time
			if s.cfg.Backend != "builtin" {
				budget = keyBudget(meta, firstArrived, startLag)
			}
			if out := s.guard.enhance(p.ss.ctx, in, s.cfg.Scale, budget); out != nil {
				toI420(out, big, p.ow, p.oh)
			}
		}
		ms := meta.pts - base
		if ms <= last {
			ms = last + 1
		}
		last = ms
		tick := uint64(2 * ms)
		if meta.key {
			tick++
		}
		p.mu.Lock()
		p.encoding = append(p.encoding, encMeta{ms: ms, frameMeta: meta})
		p.mu.Unlock()
		first = false
		hdr = rawmkv.AppendFrameHeader(hdr[:0], tick, len(big))
		_, err := p.encIn.Write(hdr)
		if err == nil {
			_, err = p.encIn.Write(big)
		}
		if err != nil {
			p.fail(fmt.Errorf("writing to the encoder: %w%s", err, p.encLog.suffix()))
			writing = false // drain the decoder's output from now on
		}
		p.recycle(big, small)
	}
	p.encIn.Close() // the encoder flushes and ends
	// One output may still be open if the decoder broke half way: drain
	// both so the readers end; the feeder sees the failure and restarts.
	for range p.bigCh {
	}
	for range p.smallCh {
	}
}

// keyBudget is the wall time by which keyframe m's backend answer must be
// in: budgetShare of a GOP after it arrived. Without a budget of its own a
// keyframe would wait up to the timeout and delay every frame behind it, so
// a backend slower than a GOP would make the latency grow without limit.
// The backlog ffmpeg's start-up piles up (startLag, at the pipe's first
// frame) is not the backend's doing: it is forgiven, shrinking at half the
// stream's pace, well below the rate the pipe works it off (about twice
// real time, docs/performance.md), so it never hides a backend's delay.
func keyBudget(m frameMeta, firstArrived, startLag int64) time.Time {
	gop := time.Duration(m.gopMs) * time.Millisecond
	if gop <= 0 {
		gop = defaultGOP
	}
	forgiven := max(startLag-(m.arrived-firstArrived)/2, 0)
	return time.Unix(0, m.arrived+forgiven).Add(time.Duration(float64(gop) * budgetShare))
}

func (p *videoPipe) recycle(big, small []byte) {
	select {
	case p.bigFree <- big:
	default:
	}
	select {
	case p.smallFree <- small:
	default:
	}
}

// popEncoded matches an output frame (FLV timestamp ts, in ms of the
// encoder's timeline, keyframes rounded up by half a tick) with its meta.
func (p *videoPipe) popEncoded(ts int64) (frameMeta, bool) {
	m, ok, lost := p.matchEncoded(ts)
	if lost > 0 {
		p.ss.s.drops.lost.Add(lost)
		p.ss.videoGone(lost)
	}
	return m, ok
}

func (p *videoPipe) matchEncoded(ts int64) (frameMeta, bool, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	lost := 0
	for len(p.encoding) > 0 {
		m := p.encoding[0]
		switch {
		case ts == m.ms || ts == m.ms+1:
			p.encoding = p.encoding[1:]
			return m.frameMeta, true, lost
		case ts > m.ms+1: // the encoder dropped that one
			p.encoding = p.encoding[1:]
			lost++
		default:
			return frameMeta{}, false, lost
		}
	}
	return frameMeta{}, false, lost
}

// encReader reads the encoder's FLV and emits its frames with the original
// timestamps.
func (p *videoPipe) encReader() {
	defer close(p.done)
	s := p.ss.s
	var fh [13]byte
	if _, err := io.ReadFull(p.encOut, fh[:]); err != nil {
		p.fail(fmt.Errorf("encoder output: %w", err))
		return
	}
	if string(fh[:3]) != "FLV" {
		p.fail(errors.New("encoder output is not FLV"))
		io.Copy(io.Discard, p.encOut)
		return
	}
	var th [flv.HeaderSize]byte
	var pts [4]byte
	for {
		if _, err := io.ReadFull(p.encOut, th[:]); err != nil {
			if err != io.EOF {
				p.fail(fmt.Errorf("encoder output: %w", err))
			}
			return
		}
		h, _ := flv.ParseHeader(th[:])
		pk := core.NewPacket(flv.HeaderSize + int(h.DataSize))
		copy(pk.Data, th[:])
		if _, err := io.ReadFull(p.encOut, pk.Data[flv.HeaderSize:]); err != nil {
			pk.Release()
			p.fail(fmt.Errorf("encoder output: %w", err))
			return
		}
		if _, err := io.ReadFull(p.encOut, pts[:]); err != nil {
			pk.Release()
			p.fail(fmt.Errorf("encoder output: %w", err))
			return
		}
		body := pk.Data[flv.HeaderSize:]
		if h.Type != flv.TypeVideo || len(body) < 5 {
			pk.Release()
			continue
		}
		switch body[1] {
		case flv.AVCSequenceHeader:
			p.headerPending = append(p.headerPending[:0], pk.Data...)
			pk.Release()
			continue
		case flv.AVCNALU:
		default:
			pk.Release()
			continue
		}
		meta, ok := p.popEncoded(int64(h.Timestamp))
		if !ok {
			s.drops.lost.Inc()
			pk.Release()
			continue
		}
		ts := uint32(max(meta.pts, 0))
		flv.PutHeader(pk.Data, flv.TypeVideo, h.DataSize, ts)
		body[2], body[3], body[4] = 0, 0, 0 // no B-frames out: DTS = PTS
		pk.Type, pk.Timestamp, pk.Stream, pk.Ingest = flv.TypeVideo, ts, p.ss.st, meta.ingest
		var hp *core.Packet
		if p.headerPending != nil {
			hp = core.NewPacket(len(p.headerPending))
			copy(hp.Data, p.headerPending)
			flv.PutHeader(hp.Data, flv.TypeVideo, uint32(len(p.headerPending)-flv.HeaderSize), ts)
			hp.Type, hp.Timestamp, hp.Stream, hp.Ingest = flv.TypeVideo, ts, p.ss.st, meta.ingest
			p.ss.setVideoInit(append([]byte(nil), hp.Data...))
			p.headerPending = nil
		}
		p.progress.Store(time.Now().UnixNano())
		p.fedSince.Store(0)
		p.ss.emitVideo(hp, pk)
	}
}

// watch kills both ffmpegs when frames keep going in and none has come out
// for stall: a hung ffmpeg would otherwise shed the stream for good. (A few
// frames held while the input pauses are not a hang: the decoder may keep
// some for reordering.) The feeder then restarts the pipe at the next keyframe.
func (p *videoPipe) watch(stall time.Duration) {
	defer p.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-p.stopWatch:
			return
		case <-tick.C:
		}
		if p.fedSince.Load() > hangFrames && time.Since(time.Unix(0, p.progress.Load())) > stall {
			p.kill(fmt.Sprintf("no frame out of ffmpeg for %v", stall))
			return
		}
	}
}

// kill ends both processes (by PID) and marks the pipe failed.
func (p *videoPipe) kill(why string) {
	p.ss.s.env.Log.Error("killing ffmpeg", "stream", p.ss.st.Name, "why", why,
		"decoder_pid", p.dec.Process.Pid, "encoder_pid", p.enc.Process.Pid)
	p.fail(errors.New(why))
	p.dec.Process.Kill()
	p.enc.Process.Kill()
}

// finish ends the pipe: the decoder's input closes, everything inside is
// encoded and emitted, both processes exit (killed after drainTimeout).
func (p *videoPipe) finish() {
	log := p.ss.s.env.Log
	p.closeIn.Do(func() { p.decIn.Close() })
	timer := time.NewTimer(drainTimeout)
	select {
	case <-p.done:
		timer.Stop()
	case <-timer.C:
		p.kill(fmt.Sprintf("did not finish within %v of its input closing", drainTimeout))
		<-p.done
	}
	close(p.stopWatch)
	p.wg.Wait()
	decErr, encErr := p.dec.Wait(), p.enc.Wait()
	for _, f := range []*os.File{p.bigR, p.smallR, p.encIn, p.encOut} {
		f.Close()
	}
	p.mu.Lock()
	left := len(p.decoding) + len(p.encoding)
	p.decoding, p.encoding = nil, nil
	failure := p.failure
	p.mu.Unlock()
	if left > 0 {
		p.ss.s.drops.ffmpeg.Add(left)
		p.ss.videoGone(left)
	}
	if decErr != nil || encErr != nil || failure != nil {
		log.Error("ffmpeg failed", "stream", p.ss.st.Name, "err", failure,
			"decoder", exitText(decErr, p.decLog), "encoder", exitText(encErr, p.encLog), "frames_lost", left)
	}
}

func exitText(err error, t *tail) string {
	if err == nil {
		return "ok" + t.suffix()
	}
	return err.Error() + t.suffix()
}

// tail keeps the last bytes ffmpeg wrote to stderr, for error reports.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

const tailMax = 2048

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if len(t.buf) > tailMax {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailMax:]...)
	}
	return len(b), nil
}

func (t *tail) suffix() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.buf) == 0 {
		return ""
	}
	return ": " + string(t.buf)
}
