package srenhancer

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/stages/srenhancer/internal/srtest"
)

// childFFmpegs lists ffmpeg processes whose parent is this test binary.
func childFFmpegs(t *testing.T) []string {
	t.Helper()
	var found []string
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	me := strconv.Itoa(os.Getpid())
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(s[i+1:])
		if len(fields) > 1 && fields[1] == me && strings.Contains(s[:i], "ffmpeg") {
			found = append(found, d)
		}
	}
	return found
}

// TestBFramesScale2 feeds a clip with B-frames (composition offsets): the
// output has none, each frame keeps its presentation time, at 2×.
func TestBFramesScale2(t *testing.T) {
	testmedia.NeedFFmpeg(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	path := filepath.Join(t.TempDir(), "bframes.flv")
	out, err := exec.Command("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25",
		"-f", "lavfi", "-i", "sine=frequency=500:sample_rate=48000", "-t", "3",
		"-c:v", "libx264", "-preset", "fast", "-bf", "3", "-g", "25", "-sc_threshold", "0",
		"-c:a", "aac", "-f", "flv", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	tags := testmedia.Tags(t, path)
	r := srtest.Run(t, map[string]any{"scale": 2}, tags)
	srtest.CheckClean(t, r.File, 640, 360)
	srtest.CheckStream(t, tags, r, 640, 360)
	for _, p := range r.Out {
		if p.Type == flv.TypeVideo && len(p.Data) > 15 && (p.Data[13] != 0 || p.Data[14] != 0 || p.Data[15] != 0) {
			t.Fatal("a composition offset in the output")
		}
	}
	if left := childFFmpegs(t); len(left) > 0 {
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
	out, err := exec.Command("ffmpeg", "-v", "error", "-i", r.File, "-f", "null", "-").CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("decoding: %v\n%s", err, out)
	}
	// ffprobe 5.1 crashes on a size change in FLV (new extradata side data): ask showinfo.
	out, err = exec.Command("ffmpeg", "-v", "info", "-i", r.File, "-vf", "showinfo", "-f", "null", "-").CombinedOutput()
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
