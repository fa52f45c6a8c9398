// Package srtest drives sr-enhancer end to end for its tests: a marking
// stand-in backend, a paced run over real clips, ffmpeg checks of the output.
package srtest

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/stagetest"
	"github.com/mediapipe/mediapipe/internal/testmedia"
)

// MarkSize is the side of the white square (and of the black one to its
// right) that the stand-in backend paints into every picture it returns.
const MarkSize = 64

// StandIn is a basicKVSR stand-in: nearest-neighbour 4× upscale, BGR24 out,
// marked so the viewer's keyframes can be traced to it.
func StandIn(t testing.TB, mode string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		width, _ := strconv.Atoi(r.URL.Query().Get("w"))
		height, _ := strconv.Atoi(r.URL.Query().Get("h"))
		in, _ := io.ReadAll(r.Body)
		if len(in) != width*height*3 || width == 0 {
			http.Error(w, "bad size", http.StatusBadRequest)
			return
		}
		switch {
		case mode == "500":
			http.Error(w, "model crashed", http.StatusInternalServerError)
			return
		case mode == "slow":
			time.Sleep(time.Second)
		case strings.HasPrefix(mode, "sleep:"): // "sleep:1.3s": answers that late, or never if the caller gave up
			d, err := time.ParseDuration(strings.TrimPrefix(mode, "sleep:"))
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		ow, oh := width*4, height*4
		out := make([]byte, ow*oh*3)
		for y := 0; y < oh; y++ {
			for x := 0; x < ow; x++ {
				s := ((y/4)*width + x/4) * 3
				d := (y*ow + x) * 3
				out[d], out[d+1], out[d+2] = in[s+2], in[s+1], in[s]
				if y < MarkSize && x < 2*MarkSize {
					v := byte(255)
					if x >= MarkSize {
						v = 0
					}
					out[d], out[d+1], out[d+2] = v, v, v
				}
			}
		}
		if mode == "wrongsize" {
			out = out[:len(out)-3]
		}
		w.Write(out)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// Result is what a Run produced.
type Result struct {
	Out  []stagetest.Captured
	Env  *core.Env
	File string // the output written as an FLV file
	// Frames is, for RunRealtime, every video frame sent in stream order
	// with how long the stage took to emit it.
	Frames []FrameTime
}

// FrameTime is one video frame's passage through the stage.
type FrameTime struct {
	TS      uint32 // FLV timestamp, ms
	Key     bool
	Latency time.Duration // emitted minus sent; -1 if it never came out
}

// Drops reads the stage's drop counter for reason.
func (r *Result) Drops(reason string) float64 { return r.Env.Metrics.Drop(reason).Value() }

// Counter reads one of the stage's event counters.
func (r *Result) Counter(event string) float64 {
	return core.CounterValue(r.Env.Metrics.Counter(event))
}

// Run feeds tags through an sr-enhancer built from raw as one stream, paced
// by its output so nothing is shed, and returns what came out. At most
// window frames are inside the stage: a keyframe waits behind few frames,
// so its backend budget (which counts from its arrival) is not spent in
// the stage's queue, as it would not be behind a live publisher.
func Run(t testing.TB, raw map[string]any, tags [][]byte) *Result {
	t.Helper()
	return run(t, raw, tags, window)
}

const window = 8

// frameDrops are the reasons the stage writes a video frame off.
var frameDrops = []string{"queue_full", "wait_keyframe", "no_sequence_header", "ffmpeg_failure", "frame_lost"}

// RunUnpaced feeds all tags at once, as a publisher far faster than ffmpeg
// would: the stage must shed.
func RunUnpaced(t testing.TB, raw map[string]any, tags [][]byte) *Result {
	t.Helper()
	return run(t, raw, tags, 0)
}

func run(t testing.TB, raw map[string]any, tags [][]byte, window int) *Result {
	t.Helper()
	st, env := build(t, raw)
	h := stagetest.Start(t, st, env, false)
	s := h.StartStream("live/movie")
	sentVideo := 0
	for _, tag := range tags {
		hd, err := flv.ParseHeader(tag)
		if err != nil {
			t.Fatal(err)
		}
		if hd.Type == flv.TypeVideo && window > 0 {
			sentVideo++
			WaitFor(t, func() bool {
				inside := float64(sentVideo - VideoFrames(h.Out.Data()))
				for _, reason := range frameDrops { // written off: never coming out
					inside -= env.Metrics.Drop(reason).Value()
				}
				return inside < float64(window)
			}, 20*time.Second, "the stage to keep up")
		}
		h.SendData(s, hd.Type, hd.Timestamp, tag)
	}
	h.EndStream(s)
	WaitFor(t, func() bool {
		p := h.Out.Packets()
		return len(p) > 0 && p[len(p)-1].Event == core.EventEnd
	}, 30*time.Second, "the end event")
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	r := &Result{Out: h.Out.Packets(), Env: env}
	r.File = WriteFLV(t, r.Out)
	return r
}

// build builds an sr-enhancer from raw, logging through t.
func build(t testing.TB, raw map[string]any) (core.Stage, *core.Env) {
	t.Helper()
	env := core.TestEnv("sr-enhancer")
	env.Log = TestLogger(t)
	return stagetest.Build(t, "sr-enhancer", raw, env), env
}

// WriteFLV writes the data packets of out as an FLV file and returns its path.
func WriteFLV(t testing.TB, out []stagetest.Captured) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "out.flv")
	file := flv.FileHeader(true, true)
	for _, p := range out {
		if p.Event == core.EventData {
			file = append(file, p.Data...)
			file = flv.AppendPreviousTagSize(file, len(p.Data))
		}
	}
	if err := os.WriteFile(path, file, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// timedOutput keeps every packet and when each video frame came out.
type timedOutput struct {
	*stagetest.Collector
	mu sync.Mutex
	at map[uint32]time.Time
}

func (o *timedOutput) Emit(p *core.Packet) {
	if p.Type == flv.TypeVideo && len(p.Data) > 12 && p.Data[12] == flv.AVCNALU {
		o.mu.Lock()
		o.at[p.Timestamp] = time.Now()
		o.mu.Unlock()
	}
	o.Collector.Emit(p)
}

// RunRealtime feeds tags as a live publisher does (ffmpeg -re): each at its
// timestamp after the start, whether or not the stage keeps up, stamped
// with its ingest time as rtmp-source does. Result.Frames holds each video
// frame's latency through the stage.
func RunRealtime(t testing.TB, raw map[string]any, tags [][]byte) *Result {
	t.Helper()
	st, env := build(t, raw)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if o, ok := st.(core.Opener); ok {
		if err := o.Open(ctx); err != nil {
			t.Fatalf("open: %v", err)
		}
	}
	out := &timedOutput{Collector: stagetest.NewCollector(), at: map[uint32]time.Time{}}
	in := make(chan *core.Packet, 1024)
	done := make(chan error, 1)
	go func() { done <- st.Run(ctx, in, out) }()
	s := core.NewStream("live/movie")
	in <- core.NewEvent(core.EventStart, s)
	type sentFrame struct {
		ts  uint32
		key bool
		at  time.Time
	}
	var sent []sentFrame
	start := time.Now()
	for _, tag := range tags {
		hd, err := flv.ParseHeader(tag)
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Until(start.Add(time.Duration(hd.Timestamp) * time.Millisecond)); d > 0 {
			time.Sleep(d)
		}
		p := core.NewPacket(len(tag))
		copy(p.Data, tag)
		p.Stream, p.Type, p.Timestamp, p.Ingest = s, hd.Type, hd.Timestamp, time.Now().UnixNano()
		if v, ok := flv.ParseVideo(tag[flv.HeaderSize:]); ok && hd.Type == flv.TypeVideo && v.PacketType == flv.AVCNALU {
			sent = append(sent, sentFrame{hd.Timestamp, v.FrameType == flv.FrameKey, time.Now()})
		}
		in <- p
	}
	in <- core.NewEvent(core.EventEnd, s)
	WaitFor(t, func() bool {
		p := out.Packets()
		return len(p) > 0 && p[len(p)-1].Event == core.EventEnd
	}, 30*time.Second, "the end event")
	close(in)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	r := &Result{Out: out.Packets(), Env: env}
	r.File = WriteFLV(t, r.Out)
	out.mu.Lock()
	defer out.mu.Unlock()
	for _, f := range sent {
		lat := time.Duration(-1)
		if at, ok := out.at[f.ts]; ok {
			lat = at.Sub(f.at)
		}
		r.Frames = append(r.Frames, FrameTime{TS: f.ts, Key: f.key, Latency: lat})
	}
	return r
}

// Interleaving checks that each tag type's timestamps never go back in
// out's data, and returns the largest backward step across types: how far a
// tag lags the newest tag of any type before it (what a player sees as a
// backward timestamp jump).
func Interleaving(t testing.TB, out []stagetest.Captured) time.Duration {
	t.Helper()
	last := map[uint8]uint32{}
	var newest, back uint32
	for i, p := range out {
		if p.Event != core.EventData || (p.Type != flv.TypeAudio && p.Type != flv.TypeVideo) {
			continue
		}
		if prev, ok := last[p.Type]; ok && p.Timestamp < prev {
			t.Fatalf("tag %d (type %d) at %d ms after one at %d ms", i, p.Type, p.Timestamp, prev)
		}
		last[p.Type] = p.Timestamp
		newest = max(newest, p.Timestamp)
		back = max(back, newest-p.Timestamp)
	}
	return time.Duration(back) * time.Millisecond
}

// Captures turns raw tags into Captured data packets, for Interleaving.
func Captures(tags [][]byte) []stagetest.Captured {
	out := make([]stagetest.Captured, 0, len(tags))
	for _, tag := range tags {
		hd, _ := flv.ParseHeader(tag)
		out = append(out, stagetest.Captured{Event: core.EventData, Data: tag, Type: hd.Type, Timestamp: hd.Timestamp})
	}
	return out
}

// VideoFrames counts the video frame tags (not headers) in ps.
func VideoFrames(ps []stagetest.Captured) int {
	n := 0
	for _, p := range ps {
		if p.Type == flv.TypeVideo && len(p.Data) > 12 && p.Data[12] == flv.AVCNALU {
			n++
		}
	}
	return n
}

// WaitFor polls cond until it holds or d passes (then the test fails).
func WaitFor(t testing.TB, cond func() bool, d time.Duration, what string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// CheckClean asserts that ffmpeg decodes the file without a word and that
// every picture is w×h.
func CheckClean(t testing.TB, file string, w, h int) {
	t.Helper()
	testmedia.DecodeClean(t, file)
	out, err := exec.Command("ffprobe", "-v", "error", "-select_streams", "v", "-show_entries", "frame=width,height", "-of", "csv=p=0", file).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe: %v\n%s", err, out)
	}
	want := strconv.Itoa(w) + "," + strconv.Itoa(h)
	for i, line := range strings.Fields(string(out)) {
		if line = strings.TrimRight(line, ","); line != want {
			t.Fatalf("frame %d is %s, want %s", i, line, want)
		}
	}
}

// KeyframePictures decodes only the keyframes of file, as 8-bit grey.
func KeyframePictures(t testing.TB, file string, w, h int) [][]byte {
	t.Helper()
	out, err := exec.Command("ffmpeg", "-v", "error", "-skip_frame", "nokey", "-i", file,
		"-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1").Output()
	if err != nil {
		t.Fatalf("ffmpeg: %v", err)
	}
	var pics [][]byte
	for len(out) >= w*h {
		pics = append(pics, out[:w*h])
		out = out[w*h:]
	}
	return pics
}

// Marked reports whether a grey picture w wide carries the stand-in's mark.
func Marked(pic []byte, w int) bool {
	mean := func(x0 int) int {
		sum := 0
		for y := 8; y < MarkSize-8; y++ {
			for x := x0 + 8; x < x0+MarkSize-8; x++ {
				sum += int(pic[y*w+x])
			}
		}
		return sum / ((MarkSize - 16) * (MarkSize - 16))
	}
	return mean(0) > 235 && mean(MarkSize) < 20
}

// Kinds splits tags: the audio tags, and how many video frames and keyframes.
func Kinds(tags [][]byte) (audio [][]byte, keyframes, frames int) {
	for _, tag := range tags {
		switch tag[0] & 0x1f {
		case flv.TypeAudio:
			audio = append(audio, tag)
		case flv.TypeVideo:
			if v, ok := flv.ParseVideo(tag[flv.HeaderSize:]); ok && v.PacketType == flv.AVCNALU {
				frames++
				if v.FrameType == flv.FrameKey {
					keyframes++
				}
			}
		}
	}
	return
}

// CheckStream compares what must not change: audio byte for byte and in
// order, one output frame per input frame at the same time, keyframes at
// the same times, a sequence header before the first frame, metadata patched.
func CheckStream(t testing.TB, in [][]byte, r *Result, w, h int) {
	t.Helper()
	var outTags [][]byte
	for _, p := range r.Out {
		if p.Event == core.EventData {
			outTags = append(outTags, p.Data)
		}
	}
	inAudio, inKeys, inFrames := Kinds(in)
	outAudio, outKeys, outFrames := Kinds(outTags)
	if len(inAudio) != len(outAudio) {
		t.Fatalf("%d audio tags out, want %d", len(outAudio), len(inAudio))
	}
	for i := range inAudio {
		if !bytes.Equal(inAudio[i], outAudio[i]) {
			t.Fatalf("audio tag %d differs", i)
		}
	}
	if inFrames != outFrames || inKeys != outKeys {
		t.Fatalf("out: %d frames, %d keyframes; in: %d, %d", outFrames, outKeys, inFrames, inKeys)
	}
	var inTimes, outTimes []string
	for _, tag := range in {
		if v, ok := flv.ParseVideo(tag[flv.HeaderSize:]); ok && tag[0] == flv.TypeVideo && v.PacketType == flv.AVCNALU {
			hd, _ := flv.ParseHeader(tag)
			inTimes = append(inTimes, strconv.Itoa(int(int32(hd.Timestamp)+v.CTS))+keyMark(v))
		}
	}
	sort.Strings(inTimes)
	sawHeader := false
	for _, tag := range outTags {
		if tag[0] != flv.TypeVideo {
			continue
		}
		v, _ := flv.ParseVideo(tag[flv.HeaderSize:])
		if v.PacketType == flv.AVCSequenceHeader {
			sawHeader = true
			continue
		}
		if v.PacketType != flv.AVCNALU {
			continue
		}
		if !sawHeader {
			t.Fatal("a frame before the sequence header")
		}
		hd, _ := flv.ParseHeader(tag)
		outTimes = append(outTimes, strconv.Itoa(int(int32(hd.Timestamp)+v.CTS))+keyMark(v))
	}
	sort.Strings(outTimes)
	if strings.Join(inTimes, " ") != strings.Join(outTimes, " ") {
		t.Fatalf("frame times differ:\n in %v\nout %v", inTimes, outTimes)
	}
	for _, tag := range outTags {
		if tag[0] == flv.TypeScript && bytes.Contains(tag, []byte("onMetaData")) {
			if !bytes.Contains(tag, append([]byte("width\x00"), f64(w)...)) || !bytes.Contains(tag, append([]byte("height\x00"), f64(h)...)) {
				t.Fatalf("metadata not patched to %dx%d", w, h)
			}
		}
	}
	if last := r.Out[len(r.Out)-1]; last.Event != core.EventEnd {
		t.Fatal("the end event is not last")
	}
	if r.Out[0].Event != core.EventStart {
		t.Fatal("the start event is not first")
	}
}

func keyMark(v flv.VideoInfo) string {
	if v.FrameType == flv.FrameKey {
		return "k"
	}
	return ""
}

func f64(v int) []byte {
	var b [8]byte
	bits := math.Float64bits(float64(v))
	for i := 0; i < 8; i++ {
		b[i] = byte(bits >> (56 - 8*i))
	}
	return b[:]
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// TestLogger logs through t.
func TestLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}
