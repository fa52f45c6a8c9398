package flvfilesink_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/stagetest"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/stages/flvfilesink"
	"github.com/mediapipe/mediapipe/stages/flvtagger"
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

// sameTags compares recordings with what was sent, byte for byte, but for
// the values of onMetaData's duration and filesize, which the sink rewrites
// to the recording's own (checked by TestMetadataPatched).
func sameTags(t *testing.T, got, want [][]byte) {
	t.Helper()
	for i := 0; i < min(len(got), len(want)); i++ {
		if !bytes.Equal(maskMeta(got[i]), maskMeta(want[i])) {
			t.Fatalf("tag %d differs", i)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("got %d tags, want %d", len(got), len(want))
	}
}

// metaAt finds the 8-byte AMF0 number of key at the top level of an
// onMetaData tag, as encoders write it: key length, key, marker 0.
func metaAt(tag []byte, key string) int {
	if len(tag) < flv.HeaderSize || tag[0] != flv.TypeScript || !flv.IsOnMetaData(tag[flv.HeaderSize:]) {
		return -1
	}
	i := bytes.Index(tag, append([]byte{0, byte(len(key))}, key+"\x00"...))
	if i < 0 || i+2+len(key)+1+8 > len(tag) {
		return -1
	}
	return i + 2 + len(key) + 1
}

func metaNumber(tag []byte, key string) (float64, bool) {
	i := metaAt(tag, key)
	if i < 0 {
		return 0, false
	}
	return math.Float64frombits(binary.BigEndian.Uint64(tag[i:])), true
}

// maskMeta zeroes onMetaData's duration and filesize values in a copy of tag.
func maskMeta(tag []byte) []byte {
	out := append([]byte(nil), tag...)
	for _, k := range []string{"duration", "filesize"} {
		if i := metaAt(out, k); i >= 0 {
			clear(out[i : i+8])
		}
	}
	return out
}

// probeDuration is the format duration ffprobe reports for path.
func probeDuration(t *testing.T, path string) float64 {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe %s: %v\n%s", path, err, out)
	}
	d, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		t.Fatalf("ffprobe %s: duration %q", path, out)
	}
	return d
}

// checkMetadata asserts that the recording at path says how long it is and
// how big, as ffmpeg's own FLV muxer would: its onMetaData duration is what
// ffprobe reports, within a millisecond of ffmpeg's when it remuxes the file
// (it computes the duration itself), and filesize is the file's size.
func checkMetadata(t *testing.T, path string) {
	t.Helper()
	remux := filepath.Join(t.TempDir(), "remux.flv")
	if out, err := exec.Command("ffmpeg", "-hide_banner", "-v", "error", "-nostdin", "-i", path, "-map", "0", "-c", "copy", "-f", "flv", remux).CombinedOutput(); err != nil {
		t.Fatalf("remuxing %s: %v\n%s", path, err, out)
	}
	got, want := probeDuration(t, path), probeDuration(t, remux)
	if math.Abs(got-want) > 0.0025 { // ms timestamps: a frame's length is known to a ms
		t.Errorf("%s: ffprobe says duration %.3f s, ffmpeg's muxer %.3f s", path, got, want)
	}
	meta := readFile(t, path)[0]
	if d, ok := metaNumber(meta, "duration"); !ok || math.Abs(d-got) > 0.0005 {
		t.Errorf("%s: onMetaData duration %v (present %v), ffprobe %.3f", path, d, ok, got)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := metaNumber(meta, "filesize"); !ok || n != float64(fi.Size()) {
		t.Errorf("%s: onMetaData filesize %v (present %v), the file has %d bytes", path, n, ok, fi.Size())
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
	checkMetadata(t, path)
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
	st := core.NewStream("live/late")
	keyAt := 0
	for i, tag := range tags {
		hdr, _ := flv.ParseHeader(tag)
		flvtagger.SetInitTag(st, flv.InitKindOf(hdr.Type, tag[11:]), tag)
		if keyAt == 0 && i > len(tags)/2 && hdr.Type == flv.TypeVideo && flv.IsVideoKeyframe(tag[11:]) {
			keyAt = i
		}
	}
	init := st.Init()
	h, dir := startSink(t)
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
	checkMetadata(t, path)
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

// TestMetadataPatched: a recording cut short (the pipeline stops after 2 s
// of a 5 s stream, no end event) says it lasts 2 s, not the publisher's
// 5 s, and its real size.
func TestMetadataPatched(t *testing.T) {
	clip := testmedia.Clip(t, testmedia.Options{})
	tags := testmedia.Tags(t, clip)
	if d, ok := metaNumber(tags[0], "duration"); !ok || d < 5 {
		t.Fatalf("the clip's onMetaData duration is %v (present %v): the test needs the publisher's 5 s", d, ok)
	}
	h, dir := startSink(t)
	st := h.StartStream("live/cut")
	for _, tag := range tags {
		if hdr, _ := flv.ParseHeader(tag); hdr.Timestamp >= 2000 {
			break
		}
		send(h, st, tag)
	}
	if err := h.Close(); err != nil { // stopped, as by SIGTERM
		t.Fatal(err)
	}
	path := filepath.Join(dir, "live", "cut-20261125-090102.flv")
	probeClean(t, path)
	checkMetadata(t, path)
	if d := probeDuration(t, path); d < 1.9 || d > 2.1 {
		t.Errorf("ffprobe says a 2 s recording lasts %.3f s", d)
	}
}

// TestMetadataWithoutSlots: an onMetaData without duration or filesize is
// recorded as it came, and the file stays readable.
func TestMetadataWithoutSlots(t *testing.T) {
	h, dir := startSink(t)
	st := h.StartStream("live/bare")
	meta := flv.AppendTag(nil, flv.TypeScript, 0, []byte("\x02\x00\x0aonMetaData\x08\x00\x00\x00\x01\x00\x05width\x00\x40\x74\x00\x00\x00\x00\x00\x00\x00\x00\x09"))
	sent := [][]byte{meta}
	send(h, st, meta)
	for i := 0; i < 10; i++ {
		tag := flv.AppendTag(nil, flv.TypeAudio, uint32(i*23), []byte{0x2f, 1, byte(i)})
		sent = append(sent, tag)
		send(h, st, tag)
	}
	h.EndStream(st)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	got := readFile(t, filepath.Join(dir, "live", "bare-20261125-090102.flv"))
	if len(got) != len(sent) || !bytes.Equal(got[0], meta) {
		t.Fatalf("got %d tags, metadata %q; want %d tags, metadata %q", len(got), got[0], len(sent), meta)
	}
}

// A finished recording is announced (record_done) with its path, once the
// file is complete.
func TestRecordDoneNotice(t *testing.T) {
	tags := testmedia.Tags(t, testmedia.Clip(t, testmedia.Options{Seconds: 1}))
	root := t.TempDir()
	env := core.TestEnv("flv-file-sink")
	env.Dir = root
	env.Clock = stagetest.NewFakeClock(start)
	var mu sync.Mutex
	var got []core.Notice
	env.Events.Subscribe(func(n core.Notice) {
		if n.Name == core.NoticeRecordDone {
			if _, err := os.Stat(n.Path); err != nil {
				t.Errorf("record_done before the file is there: %v", err)
			}
		}
		mu.Lock()
		got = append(got, n)
		mu.Unlock()
	})
	st, err := flvfilesink.New(&flvfilesink.Config{Dir: "rec", BufferSize: 64 << 10}, env)
	if err != nil {
		t.Fatal(err)
	}
	h := stagetest.Start(t, st, env, false)
	s := h.StartStream("live/rec")
	for _, tag := range tags {
		send(h, s, tag)
	}
	h.EndStream(s)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := filepath.Join(root, "rec", "live", "rec-20261125-090102.flv")
	if len(got) != 1 || got[0].Name != core.NoticeRecordDone || got[0].Path != want || got[0].Stream != "live/rec" {
		t.Errorf("notices %+v, want one record_done of %s", got, want)
	}
}
