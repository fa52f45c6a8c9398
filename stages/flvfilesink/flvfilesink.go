// Package flvfilesink is the flv-file-sink stage: it records each stream to
// DIR/APP/KEY-<start time>.flv, init tags first, finished when the stream ends.
package flvfilesink

import (
	"bufio"
	"cmp"
	"context"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
)

// Config is flv-file-sink's parameters.
type Config struct {
	Dir        string `param:"dir" required:"true" doc:"directory recordings go to (relative to the pipeline file's directory); each stream is written to DIR/APP/KEY-YYYYMMDD-HHMMSS.flv"`
	BufferSize int    `param:"buffer_size" default:"262144" min:"4096" max:"67108864" doc:"write buffer per recording, in bytes"`
}

// sample is an example [[pipeline.stage]] block for this stage, carried in
// its spec; stages/all checks that it validates.
//
//go:embed sample.toml
var sample string

func init() {
	core.Register(core.Spec{
		Name:    "flv-file-sink",
		Summary: "records each stream to an FLV file DIR/APP/KEY-<start time>.flv, finished properly when the stream ends or the pipeline stops",
		In:      core.KindFLV,
		Out:     core.KindNone,
		Sample:  sample,
	}, New)
}

// Stage is a running flv-file-sink.
type Stage struct {
	cfg  Config
	env  *core.Env
	dir  string
	recs map[*core.Stream]*recording

	mRecordings prometheus.Counter
	mBytes      prometheus.Counter
	mWriteErr   *core.DropCounter
	mBadTag     *core.DropCounter
}

// New builds an flv-file-sink.
func New(cfg *Config, env *core.Env) (core.Stage, error) {
	dir := env.Path(cmp.Or(cfg.Dir, ".")) // dir = "" is the pipeline file's directory too
	return &Stage{
		cfg:         *cfg,
		env:         env,
		dir:         dir,
		recs:        map[*core.Stream]*recording{},
		mRecordings: env.Metrics.Counter("recordings"),
		mBytes:      env.Metrics.Counter("bytes_written"),
		mWriteErr:   env.Metrics.Drop("write_error"),
		mBadTag:     env.Metrics.Drop("bad_tag"),
	}, nil
}

// Open makes sure the directory exists, so a bad path fails at start.
func (s *Stage) Open(context.Context) error {
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return fmt.Errorf("flv-file-sink: %w", err)
	}
	return nil
}

// Dir is the resolved recording directory.
func (s *Stage) Dir() string { return s.dir }

// Run records until in closes, then finishes every open recording.
func (s *Stage) Run(_ context.Context, in <-chan *core.Packet, _ core.Output) error {
	for p := range in {
		switch p.Event {
		case core.EventStart:
			s.start(p.Stream)
		case core.EventEnd:
			if r := s.recs[p.Stream]; r != nil {
				delete(s.recs, p.Stream)
				s.finish(r)
			}
		default:
			s.write(p)
		}
		p.Release()
	}
	for st, r := range s.recs {
		delete(s.recs, st)
		s.finish(r)
	}
	return nil
}

// recording is one stream's open file.
type recording struct {
	st     *core.Stream
	path   string
	f      *os.File
	w      *bufio.Writer
	seen   [3]bool // in-band init tags written (metadata, video, audio)
	media  bool    // a media tag was written: init tags are settled
	bytes  int64
	tags   int
	failed bool
	pts    [4]byte

	// What finish patches into the onMetaData tags written, as ffmpeg's FLV
	// muxer does: the publisher's duration is the live stream's, or a
	// guess, not the recording's. Bounded: later metadata goes unpatched.
	slots  [4]metaSlot
	nslots int
	span   timeSpan
}

// metaSlot is where, in the file, one onMetaData tag's values are (-1: absent).
type metaSlot struct{ duration, filesize int64 }

// timeSpan follows the media timestamps (ms) of a recording.
type timeSpan struct {
	first uint32      // the earliest, once either last is seen
	last  [2]struct { // audio, video
		ts, step uint32 // latest timestamp, and the step that led to it
		seen     bool
	}
}

func (t *timeSpan) add(typ uint8, ts uint32) {
	if !t.last[0].seen && !t.last[1].seen || ts < t.first {
		t.first = ts
	}
	l := &t.last[0]
	if typ == flv.TypeVideo {
		l = &t.last[1]
	}
	switch {
	case !l.seen:
		l.ts, l.seen = ts, true
	case ts > l.ts:
		l.step, l.ts = ts-l.ts, ts
	}
}

// seconds is how long the recording plays: from its first media timestamp
// to the end of its last frame, that frame lasting as long as the one
// before it (what ffmpeg's muxer reports: last pts + packet duration).
func (t *timeSpan) seconds() float64 {
	var end uint32
	for _, l := range t.last {
		if l.seen {
			end = max(end, l.ts+l.step)
		}
	}
	if end < t.first { // no media at all makes both 0, and 0 s
		return 0
	}
	return float64(end-t.first) / 1000
}

func (s *Stage) start(st *core.Stream) {
	if s.recs[st] != nil {
		return
	}
	r := &recording{st: st}
	s.recs[st] = r
	if err := s.create(r); err != nil {
		r.failed = true
		s.env.Log.Error("flv-file-sink: cannot start recording", "stream", st.Name, "err", err)
		return
	}
	s.mRecordings.Inc()
	s.env.Log.Info("recording started", "stream", st.Name, "path", r.path)
}

// create opens DIR/APP/KEY-<start>.flv (never overwriting) and writes the file header.
func (s *Stage) create(r *recording) error {
	rel := safeName(r.st.Name)
	dir := filepath.Join(s.dir, filepath.Dir(rel))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	base := filepath.Base(rel) + "-" + s.env.Clock.Now().UTC().Format("20060102-150405")
	for i := 0; ; i++ {
		name := base + ".flv"
		if i > 0 {
			name = fmt.Sprintf("%s-%d.flv", base, i)
		}
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) && i < 1000 {
			continue
		}
		if err != nil {
			return err
		}
		r.f, r.path = f, f.Name()
		break
	}
	r.w = bufio.NewWriterSize(r.f, s.cfg.BufferSize)
	hdr := flv.FileHeader(true, true)
	_, _ = r.w.Write(hdr)
	r.bytes += int64(len(hdr))
	return nil
}

// safeName turns a stream name into a relative path that stays inside dir.
func safeName(name string) string {
	segs := strings.Split(name, "/")
	for i, seg := range segs {
		if seg == "" || seg == "." || seg == ".." || strings.ContainsAny(seg, "\\\x00") {
			segs[i] = "_"
		}
	}
	if len(segs) == 1 {
		segs = append([]string{"_"}, segs...)
	}
	return filepath.Join(segs...)
}

func (s *Stage) write(p *core.Packet) {
	r := s.recs[p.Stream]
	if r == nil { // a stream whose start we missed
		s.start(p.Stream)
		r = s.recs[p.Stream]
	}
	if r.failed {
		s.mWriteErr.Inc()
		return
	}
	h, err := flv.Check(p.Data, 0)
	if err != nil {
		s.mBadTag.Inc()
		return
	}
	body := p.Data[flv.HeaderSize:]
	kind := flv.InitKindOf(h.Type, body)
	if kind != flv.InitNone {
		r.seen[kind-1] = true
	} else if !r.media && h.Type != flv.TypeScript {
		// First media tag: a stream joined late brings its init tags as
		// stream metadata rather than in band; write the missing ones first.
		r.media = true
		if init := p.Stream.Init(); init != nil {
			for i, tag := range [3][]byte{init.Metadata, init.Video, init.Audio} {
				if !r.seen[i] && len(tag) > 0 {
					s.put(r, tag)
				}
			}
		}
	}
	s.put(r, p.Data)
	if kind == flv.InitNone && h.Type != flv.TypeScript {
		r.span.add(h.Type, h.Timestamp) // sequence headers are no frames: they carry no time
	}
}

func (s *Stage) put(r *recording, tag []byte) {
	if r.failed {
		return
	}
	if tag[0]&0x1f == flv.TypeScript && r.nslots < len(r.slots) && flv.IsOnMetaData(tag[flv.HeaderSize:]) {
		d, f := metaSlots(tag[flv.HeaderSize:])
		at := r.bytes + flv.HeaderSize
		sl := metaSlot{-1, -1}
		if d >= 0 {
			sl.duration = at + int64(d)
		}
		if f >= 0 {
			sl.filesize = at + int64(f)
		}
		if d >= 0 || f >= 0 {
			r.slots[r.nslots] = sl
			r.nslots++
		}
	}
	_, err := r.w.Write(tag)
	if err == nil {
		r.pts = [4]byte{byte(len(tag) >> 24), byte(len(tag) >> 16), byte(len(tag) >> 8), byte(len(tag))}
		_, err = r.w.Write(r.pts[:])
	}
	if err != nil {
		s.fail(r, err)
		return
	}
	r.bytes += int64(len(tag) + 4)
	r.tags++
	s.mBytes.Add(float64(len(tag) + 4))
}

func (s *Stage) fail(r *recording, err error) {
	r.failed = true
	s.mWriteErr.Inc()
	s.env.Log.Error("flv-file-sink: recording failed", "stream", r.st.Name, "path", r.path, "err", err)
	_ = r.f.Close()
}

func (s *Stage) finish(r *recording) {
	if r.f == nil || r.failed {
		return
	}
	err := r.w.Flush()
	if err == nil {
		err = r.patch()
	}
	if cerr := r.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		s.mWriteErr.Inc()
		s.env.Log.Error("flv-file-sink: finishing recording", "stream", r.st.Name, "path", r.path, "err", err)
		return
	}
	s.env.Log.Info("recording finished", "stream", r.st.Name, "path", r.path, "tags", r.tags, "bytes", r.bytes, "duration", r.span.seconds())
	s.env.Events.Publish(core.Notice{Name: core.NoticeRecordDone, Stream: r.st.Name, Path: r.path,
		Pipeline: s.env.Pipeline, Stage: s.env.Index})
}

// patch writes the recording's duration and size into the value slots of
// its onMetaData tags, in place: the file's layout does not change.
func (r *recording) patch() error {
	var b [8]byte
	put := func(at int64, v float64) error {
		if at < 0 {
			return nil
		}
		binary.BigEndian.PutUint64(b[:], math.Float64bits(v))
		if _, err := r.f.WriteAt(b[:], at); err != nil {
			return fmt.Errorf("patching onMetaData at %d: %w", at, err)
		}
		return nil
	}
	for _, sl := range r.slots[:r.nslots] {
		if err := put(sl.duration, r.span.seconds()); err != nil {
			return err
		}
		if err := put(sl.filesize, float64(r.bytes)); err != nil {
			return err
		}
	}
	return nil
}
