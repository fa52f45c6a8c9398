package flvfilesink_test

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/stagetest"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/stages/flvfilesink"
)

var start = time.Date(2026, 11, 25, 9, 1, 2, 0, time.UTC)

func startSink(t *testing.T) (*stagetest.Harness, string) {
	t.Helper()
	root := t.TempDir()
	env := core.TestEnv("flv-file-sink")
	env.Dir = root
	env.Clock = stagetest.NewFakeClock(start)
	st, err := flvfilesink.New(&flvfilesink.Config{Dir: "rec", BufferSize: 64 << 10}, env)
	if err != nil {
		t.Fatal(err)
	}
	return stagetest.Start(t, st, env, false), filepath.Join(root, "rec")
}

func send(h *stagetest.Harness, st *core.Stream, tag []byte) {
	hdr, _ := flv.ParseHeader(tag)
	h.SendData(st, hdr.Type, hdr.Timestamp, tag)
}

func readFile(t *testing.T, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tags, err := flv.ReadAll(bufio.NewReader(f))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return tags
}

func sameTags(t *testing.T, got, want [][]byte) {
	t.Helper()
	for i := 0; i < min(len(got), len(want)); i++ {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("tag %d differs", i)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("got %d tags, want %d", len(got), len(want))
	}
}

// probeClean runs ffprobe over path and fails on any complaint.
func probeClean(t *testing.T, path string) {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0", path).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "h264\naac" {
		t.Fatalf("ffprobe %s: %v\n%s", path, err, out)
	}
	testmedia.DecodeClean(t, path)
}

func TestRecordWholeStream(t *testing.T) {
	clip := testmedia.Clip(t, testmedia.Options{})
	tags := testmedia.Tags(t, clip)
	h, dir := startSink(t)
	st := h.StartStream("live/rec")
	for _, tag := range tags {
		send(h, st, tag)
	}
	h.EndStream(st)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "live", "rec-20261125-090102.flv")
	sameTags(t, readFile(t, path), tags)
	probeClean(t, path)
	got, want := testmedia.FrameMD5(t, path), testmedia.FrameMD5(t, clip)
	if len(got) != len(want) {
		t.Fatalf("%d packets, clip has %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("packet %d: %v, want %v", i, got[i], want[i])
		}
	}
}

// TestLateStreamAndStop: a stream joined late (init tags only in
// Stream.Init), and the pipeline stopping without an end event.
func TestLateStreamAndStop(t *testing.T) {
	clip := testmedia.Clip(t, testmedia.Options{})
	tags := testmedia.Tags(t, clip)
	init := &core.InitTags{}
	keyAt := 0
	for i, tag := range tags {
		hdr, _ := flv.ParseHeader(tag)
		switch flv.InitKindOf(hdr.Type, tag[11:]) {
		case flv.InitMetadata:
			init.Metadata = tag
		case flv.InitVideo:
			init.Video = tag
		case flv.InitAudio:
			init.Audio = tag
		}
		if keyAt == 0 && i > len(tags)/2 && hdr.Type == flv.TypeVideo && flv.IsVideoKeyframe(tag[11:]) {
			keyAt = i
		}
	}
	h, dir := startSink(t)
	st := core.NewStream("live/late")
	st.SetInit(init)
	h.Send(core.NewEvent(core.EventStart, st))
	same := h.StartStream("live/late") // a second stream of the same name in the same second
	for _, tag := range tags[keyAt:] {
		send(h, st, tag)
		send(h, same, tag)
	}
	if err := h.Close(); err != nil { // input closed, no end events
		t.Fatal(err)
	}
	want := append([][]byte{init.Metadata, init.Video, init.Audio}, tags[keyAt:]...)
	path := filepath.Join(dir, "live", "late-20261125-090102.flv")
	sameTags(t, readFile(t, path), want)
	probeClean(t, path)
	if other := readFile(t, filepath.Join(dir, "live", "late-20261125-090102-1.flv")); len(other) != len(tags)-keyAt {
		t.Fatalf("second recording holds %d tags, want %d", len(other), len(tags)-keyAt)
	}
}

func TestSafeNames(t *testing.T) {
	h, dir := startSink(t)
	st := h.StartStream("../../etc/x")
	h.SendData(st, flv.TypeAudio, 0, flv.AppendTag(nil, flv.TypeAudio, 0, []byte{0x2f, 1}))
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	matches, _ := filepath.Glob(filepath.Join(dir, "_", "_", "etc", "x-*.flv"))
	if len(matches) != 1 {
		entries, _ := os.ReadDir(dir)
		t.Fatalf("recording not kept inside dir: %v", entries)
	}
}
