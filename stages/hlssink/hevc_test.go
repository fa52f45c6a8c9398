package hlssink_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// hevcTags makes a 3 s H.265 stream with x265 and packs it as enhanced
// RTMP FLV tags (ffmpeg 5 writes no H.265 into FLV): an "hvc1" sequence
// start with the hvcC record, then one CodedFramesX tag per access unit.
// It returns the tags and the raw stream's path.
func hevcTags(t *testing.T) ([][]byte, string) {
	t.Helper()
	testmedia.NeedFFmpeg(t)
	raw := filepath.Join(t.TempDir(), "clip.hevc")
	ctx, cancel := context.WithTimeout(context.Background(), testrun.FFmpegLimit)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30", "-t", "3",
		"-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
		"-x265-params", "keyint=30:min-keyint=30:bframes=0:scenecut=0:aud=1:log-level=error",
		"-f", "hevc", raw).CombinedOutput()
	if err != nil {
		t.Skipf("no x265 encode here: %v\n%s", err, out)
	}
	data, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	// Annex B: split at start codes, group at access unit delimiters.
	var nalus [][]byte
	for _, n := range bytes.Split(data, []byte{0, 0, 1}) {
		n = bytes.TrimRight(n, "\x00")
		if len(n) > 0 {
			nalus = append(nalus, n)
		}
	}
	var aus [][][]byte
	var sets [3][]byte
	for _, n := range nalus {
		switch typ := (n[0] >> 1) & 0x3f; {
		case typ == 35: // AUD
			aus = append(aus, nil)
		case typ >= 32 && typ <= 34:
			if sets[typ-32] == nil {
				sets[typ-32] = n
			}
		case len(aus) > 0:
			aus[len(aus)-1] = append(aus[len(aus)-1], n)
		}
	}
	rec := make([]byte, 23)
	rec[0], rec[21], rec[22] = 1, 0xfc|3, 3
	for i, set := range sets {
		if set == nil {
			t.Fatal("x265 wrote no VPS, SPS or PPS")
		}
		rec = append(rec, 0x80|byte(32+i), 0, 1, byte(len(set)>>8), byte(len(set)))
		rec = append(rec, set...)
	}
	tags := [][]byte{flv.AppendTag(nil, flv.TypeVideo, 0, append([]byte{0x80 | 1<<4 /* keyframe, packet type 0: SequenceStart */, 'h', 'v', 'c', '1'}, rec...))}
	for i, au := range aus {
		key := false
		body := []byte{0, 'h', 'v', 'c', '1'}
		for _, n := range au {
			if typ := (n[0] >> 1) & 0x3f; typ >= 16 && typ <= 21 {
				key = true
			}
			body = binary.BigEndian.AppendUint32(body, uint32(len(n)))
			body = append(body, n...)
		}
		ft := byte(2)
		if key {
			ft = 1
		}
		body[0] = 0x80 | ft<<4 | 3
		tags = append(tags, flv.AppendTag(nil, flv.TypeVideo, uint32(i*1000/30), body))
	}
	return tags, raw
}

// TestHEVC: an H.265 stream (enhanced RTMP) plays from the LL-HLS output
// picture for picture.
func TestHEVC(t *testing.T) {
	t.Parallel()
	tags, raw := hevcTags(t)
	want := decodedVideo(t, raw)
	s := startSink(t, nil)
	st := s.h.StartStream("live/hevc")
	s.feedAll(t, st, tags)
	s.h.EndStream(st)
	if n := s.drops("unsupported_codec") + s.drops("bad_tag") + s.drops("mux_error"); n != 0 {
		t.Errorf("%v tags of a good H.265 stream dropped", n)
	}
	got := decodedVideo(t, s.base+"/live/hevc/index.m3u8")
	if at := joinedRun(t, got, want, 30); at+len(got) != len(want) {
		t.Errorf("played %d..%d of %d", at, at+len(got), len(want))
	}
	if _, index := get(t, s.base+"/live/hevc/index.m3u8"); !bytes.Contains([]byte(index), []byte("hvc1.")) {
		t.Errorf("index does not say H.265:\n%s", index)
	}
}
