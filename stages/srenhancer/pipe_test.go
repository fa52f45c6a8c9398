package srenhancer

import (
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/stagetest"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
	"github.com/mediapipe/mediapipe/stages/srenhancer/internal/srtest"
)

// TestBFramesScale2 feeds a clip with B-frames (composition offsets): the
// output has none, each frame keeps its presentation time, at 2×.
func TestBFramesScale2(t *testing.T) {
	for _, openGOP := range []string{"0", "1"} {
		t.Run("open-gop="+openGOP, func(t *testing.T) { testBFrames(t, openGOP) })
	}
}

func testBFrames(t *testing.T, openGOP string) {
	testmedia.NeedFFmpeg(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	path := filepath.Join(t.TempDir(), "bframes.flv")
	out, err := exec.Command("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25",
		"-f", "lavfi", "-i", "sine=frequency=500:sample_rate=48000", "-t", "3",
		"-c:v", "libx264", "-preset", "fast", "-bf", "3", "-g", "25", "-sc_threshold", "0", "-x264-params", "open-gop="+openGOP,
		"-c:a", "aac", "-f", "flv", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	tags := testmedia.Tags(t, path)
	if openGOP == "1" { // join at the second keyframe: its leading B-frames reference a GOP never fed
		var cut [][]byte
		keys := 0
		for _, tag := range tags {
			if tag[0] == flv.TypeVideo && tag[flv.HeaderSize+1] == flv.AVCNALU {
				if tag[flv.HeaderSize]>>4 == flv.FrameKey {
					keys++
				}
				if keys < 2 {
					continue
				}
			}
			cut = append(cut, tag)
		}
		tags = cut
	}
	r := srtest.Run(t, map[string]any{"scale": 2}, tags)
	srtest.CheckClean(t, r.File, 640, 360)
	if openGOP == "1" {
		// The leading B-frames of the joined GOP cannot be decoded: dropped.
		_, keys, frames := srtest.Kinds(tags)
		var out [][]byte
		for _, p := range r.Out {
			out = append(out, p.Data)
		}
		_, outKeys, outFrames := srtest.Kinds(out[1 : len(out)-1])
		if lead := r.Drops("wait_keyframe"); lead == 0 || outKeys != keys || float64(outFrames)+lead != float64(frames) {
			t.Fatalf("out %d frames, %d keys, %v leading dropped; in %d frames, %d keys", outFrames, outKeys, lead, frames, keys)
		}
	} else {
		srtest.CheckStream(t, tags, r, 640, 360)
	}
	for _, p := range r.Out {
		if p.Type == flv.TypeVideo && len(p.Data) > 15 && (p.Data[13] != 0 || p.Data[14] != 0 || p.Data[15] != 0) {
			t.Fatal("a composition offset in the output")
		}
	}
	if left := testmedia.ChildProcs("ffmpeg"); len(left) > 0 {
		t.Fatalf("ffmpeg still running: %v", left)
	}
}

// TestSizeChange: a new sequence header with another size mid-stream is
// followed (the per-stream ffmpegs restart at the new size).
func TestSizeChange(t *testing.T) {
	a := testmedia.Tags(t, testmedia.Clip(t, testmedia.Options{Seconds: 2}))
	b := testmedia.Tags(t, testmedia.Clip(t, testmedia.Options{Seconds: 2, Width: 256, Height: 144}))
	tags := append([][]byte(nil), a...)
	for _, tag := range b {
		tag = append([]byte(nil), tag...)
		h, _ := flv.ParseHeader(tag)
		flv.PutHeader(tag, h.Type, h.DataSize, h.Timestamp+2100)
		tags = append(tags, tag)
	}
	r := srtest.Run(t, map[string]any{}, tags)
	testmedia.DecodeClean(t, r.File)
	// ffprobe 5.1 crashes on a size change in FLV (new extradata side data): ask showinfo.
	out, err := exec.Command("ffmpeg", "-v", "info", "-i", r.File, "-vf", "showinfo", "-f", "null", "-").CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	sizes := map[string]int{}
	var order []string
	for _, l := range regexp.MustCompile(` s:(\d+)x(\d+) `).FindAllStringSubmatch(string(out), -1) {
		l := l[1] + "," + l[2]
		if sizes[l] == 0 {
			order = append(order, l)
		}
		sizes[l]++
	}
	_, _, framesA := srtest.Kinds(a)
	_, _, framesB := srtest.Kinds(b)
	if strings.Join(order, " ") != "1280,720 1024,576" || sizes["1280,720"] != framesA || sizes["1024,576"] != framesB {
		t.Fatalf("sizes %v in order %v; want %d at 1280x720 then %d at 1024x576", sizes, order, framesA, framesB)
	}
	if got := r.Counter("ffmpeg_start"); got != 4 {
		t.Errorf("ffmpeg_start = %v, want 4 (two per size)", got)
	}
}

// TestShedding: a publisher far faster than ffmpeg makes the stage shed
// whole GOP tails, count them, and still emit a stream that decodes cleanly,
// with all the audio.
func TestShedding(t *testing.T) {
	tags := testmedia.Tags(t, testmedia.Clip(t, testmedia.Options{}))
	r := srtest.RunUnpaced(t, map[string]any{"queue_frames": 8}, tags)
	srtest.CheckClean(t, r.File, 1280, 720)
	shed := r.Drops("queue_full") + r.Drops("wait_keyframe")
	_, _, frames := srtest.Kinds(tags)
	got := srtest.VideoFrames(r.Out)
	if r.Drops("queue_full") == 0 || float64(got)+shed != float64(frames) {
		t.Fatalf("%d frames out + %v shed (queue_full %v), want %d in all", got, shed, r.Drops("queue_full"), frames)
	}
	inAudio, _, _ := srtest.Kinds(tags)
	var outTags [][]byte
	for _, p := range r.Out {
		outTags = append(outTags, p.Data)
	}
	outAudio, _, _ := srtest.Kinds(outTags[1 : len(outTags)-1])
	if len(inAudio) != len(outAudio) {
		t.Fatalf("%d audio tags out, want %d", len(outAudio), len(inAudio))
	}
}

// fakeFFmpeg writes a shell script standing in for ffmpeg.
func fakeFFmpeg(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ffmpeg")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestFFmpegFailures: an ffmpeg that dies is reported with its stderr, one
// that hangs is killed by PID; either way audio flows, the lost video is
// counted, Run returns and no process is left.
func TestFFmpegFailures(t *testing.T) {
	tags := testmedia.Tags(t, testmedia.Clip(t, testmedia.Options{Seconds: 2}))
	inAudio, _, frames := srtest.Kinds(tags)
	for _, c := range []struct {
		name, script, wantLog string
	}{
		{"dies", `echo "boom: libx264 missing" >&2; exit 1`, "boom: libx264 missing"},
		{"hangs", `exec sleep 600`, "killing ffmpeg"},
	} {
		t.Run(c.name, func(t *testing.T) {
			def, _ := core.Default.Lookup("sr-enhancer")
			env := core.TestEnv("sr-enhancer")
			var logs testrun.LogBuffer
			env.Log = slog.New(slog.NewTextHandler(&logs, nil))
			st, err := def.Build(map[string]any{"ffmpeg": fakeFFmpeg(t, c.script), "queue_frames": 8}, env)
			if err != nil {
				t.Fatal(err)
			}
			st.(*stage).stall = time.Second
			h := stagetest.Start(t, st, env, false)
			s := h.StartStream("live/movie")
			for _, tag := range tags {
				hd, _ := flv.ParseHeader(tag)
				h.SendData(s, hd.Type, hd.Timestamp, tag)
				time.Sleep(time.Millisecond)
			}
			h.EndStream(s)
			srtest.WaitFor(t, func() bool {
				p := h.Out.Packets()
				return len(p) > 0 && p[len(p)-1].Event == core.EventEnd
			}, 60*time.Second, "the end event")
			if err := h.Close(); err != nil {
				t.Fatal(err)
			}
			var out [][]byte
			for _, p := range h.Out.Data() {
				out = append(out, p.Data)
			}
			outAudio, _, outFrames := srtest.Kinds(out)
			if len(outAudio) != len(inAudio) || outFrames != 0 {
				t.Fatalf("%d audio tags (want %d), %d video frames (want 0)", len(outAudio), len(inAudio), outFrames)
			}
			lost := 0.0
			for _, reason := range []string{"ffmpeg_failure", "queue_full", "wait_keyframe", "frame_lost"} {
				lost += env.Metrics.Drop(reason).Value()
			}
			if lost != float64(frames) {
				t.Errorf("%v frames counted as dropped, want %d", lost, frames)
			}
			if !strings.Contains(logs.String(), c.wantLog) {
				t.Errorf("log lacks %q:\n%s", c.wantLog, logs.String())
			}
			if left := testmedia.ChildProcs("sleep", "ffmpeg"); len(left) > 0 {
				t.Fatalf("left running: %v", left)
			}
		})
	}
}

// TestTwoStreams: two streams at once, each with its own ffmpegs, neither
// disturbing the other; each comes out whole.
func TestTwoStreams(t *testing.T) {
	a := testmedia.Tags(t, testmedia.Clip(t, testmedia.Options{Seconds: 2}))
	b := testmedia.Tags(t, testmedia.Clip(t, testmedia.Options{Seconds: 2, Width: 256, Height: 144}))
	def, _ := core.Default.Lookup("sr-enhancer")
	env := core.TestEnv("sr-enhancer")
	st, err := def.Build(map[string]any{"scale": 2}, env)
	if err != nil {
		t.Fatal(err)
	}
	h := stagetest.Start(t, st, env, false)
	sa, sb := h.StartStream("live/a"), h.StartStream("live/b")
	for i := 0; i < len(a) || i < len(b); i++ {
		for _, x := range []struct {
			s    *core.Stream
			tags [][]byte
		}{{sa, a}, {sb, b}} {
			if i < len(x.tags) {
				hd, _ := flv.ParseHeader(x.tags[i])
				h.SendData(x.s, hd.Type, hd.Timestamp, x.tags[i])
			}
		}
		time.Sleep(5 * time.Millisecond) // about 3× real time: nothing is shed
	}
	h.EndStream(sa)
	h.EndStream(sb)
	srtest.WaitFor(t, func() bool {
		ends := 0
		for _, p := range h.Out.Packets() {
			if p.Event == core.EventEnd {
				ends++
			}
		}
		return ends == 2
	}, 30*time.Second, "both end events")
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		s    *core.Stream
		in   [][]byte
		w, h int
	}{{sa, a, 640, 360}, {sb, b, 512, 288}} {
		r := &srtest.Result{Env: env, File: filepath.Join(t.TempDir(), "out.flv")}
		file := flv.FileHeader(true, true)
		for _, p := range h.Out.Packets() {
			if p.Stream != c.s {
				continue
			}
			r.Out = append(r.Out, p)
			if p.Event == core.EventData {
				file = append(file, p.Data...)
				file = flv.AppendPreviousTagSize(file, len(p.Data))
			}
		}
		if err := os.WriteFile(r.File, file, 0o644); err != nil {
			t.Fatal(err)
		}
		srtest.CheckClean(t, r.File, c.w, c.h)
		srtest.CheckStream(t, c.in, r, c.w, c.h)
	}
}

// TestCorruptFrame: frames the decoder chokes on do not shift the keyframes:
// pictures are matched to frames by their presentation time.
func TestCorruptFrame(t *testing.T) {
	tags := testmedia.Tags(t, testmedia.Clip(t, testmedia.Options{Seconds: 3}))
	var in [][]byte
	frame := 0
	for _, tag := range tags {
		tag = append([]byte(nil), tag...)
		if tag[0] == flv.TypeVideo && tag[flv.HeaderSize+1] == flv.AVCNALU {
			frame++
			if frame%30 == 10 || frame%30 == 11 { // two P-frames a GOP: NAL length fields wrecked
				for i := flv.HeaderSize + 5; i < len(tag); i++ {
					tag[i] = 0xff
				}
			}
		}
		in = append(in, tag)
	}
	r := srtest.Run(t, map[string]any{}, in)
	srtest.CheckClean(t, r.File, 1280, 720)
	keyTimes := func(tags [][]byte) (keys []uint32, frames int) {
		for _, tag := range tags {
			if tag[0] == flv.TypeVideo && tag[flv.HeaderSize+1] == flv.AVCNALU {
				frames++
				if tag[flv.HeaderSize]>>4 == flv.FrameKey {
					h, _ := flv.ParseHeader(tag)
					keys = append(keys, h.Timestamp)
				}
			}
		}
		return
	}
	var out [][]byte
	for _, p := range r.Out {
		if p.Data != nil {
			out = append(out, p.Data)
		}
	}
	inKeys, inFrames := keyTimes(in)
	outKeys, outFrames := keyTimes(out)
	t.Logf("frames in %d, out %d, lost %v", inFrames, outFrames, r.Drops("frame_lost"))
	if !slices.Equal(inKeys, outKeys) {
		t.Fatalf("keyframes at %v, want %v", outKeys, inKeys)
	}
	if float64(outFrames)+r.Drops("frame_lost") != float64(inFrames) {
		t.Fatalf("%d frames out + %v lost, want %d", outFrames, r.Drops("frame_lost"), inFrames)
	}
}

// TestKeyBudget: a GOP's budgetShare from arrival; ffmpeg's start-up lag
// is forgiven at first and less and less after.
func TestKeyBudget(t *testing.T) {
	ms := int64(time.Millisecond)
	at := time.Unix(100, 0).UnixNano()
	for _, c := range []struct {
		name              string
		m                 frameMeta
		startLag, wantOff int64 // ms: the budget is wantOff after at
	}{
		{"unknown GOP", frameMeta{arrived: at}, 0, 800},
		{"2 s GOP", frameMeta{arrived: at, gopMs: 2000}, 0, 1600},
		{"first keyframe, slow start", frameMeta{arrived: at}, 700, 1500},
		{"a second later", frameMeta{arrived: at + 1000*ms, gopMs: 1000}, 700, 1000 + 200 + 800},
		{"start-up worked off", frameMeta{arrived: at + 2000*ms, gopMs: 1000}, 700, 2000 + 800},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := keyBudget(c.m, at, c.startLag*ms).Sub(time.Unix(0, at))
			if got != time.Duration(c.wantOff)*time.Millisecond {
				t.Fatalf("budget %v after arrival, want %d ms", got, c.wantOff)
			}
		})
	}
}
