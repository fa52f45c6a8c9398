package rawmkv

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestSizeVint(t *testing.T) {
	for _, c := range []struct {
		v    uint64
		want []byte
	}{
		{0, []byte{0x80}},
		{126, []byte{0xFE}},
		{127, []byte{0x40, 0x7F}}, // 0xFF would mean unknown
		{1382400, []byte{0x35, 0x18, 0x00}},
		{1 << 21, []byte{0x10, 0x20, 0x00, 0x00}},
	} {
		if got := appendSize(nil, c.v); !bytes.Equal(got, c.want) {
			t.Errorf("appendSize(%d) = %x, want %x", c.v, got, c.want)
		}
	}
}

func TestHeaderFourCC(t *testing.T) {
	if _, err := Header(2, 2, "yuv420p", 1e6); err != ErrFourCC {
		t.Fatalf("err %v", err)
	}
}

// TestFFmpegForcedKeyframes checks the trick sr-enhancer relies on: the
// low bit of each frame's timestamp, read by -force_key_frames, puts the
// encoder's IDR frames exactly where we ask. ffmpeg's t counts from the first
// frame, which is a key frame (odd), so key frames sit at even offsets.
func TestFFmpegForcedKeyframes(t *testing.T) {
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Skip("ffmpeg not on PATH")
	}
	ffprobe, err := exec.LookPath("ffprobe")
	if err != nil {
		t.Skip("ffprobe not on PATH")
	}
	const w, h = 64, 36
	keys := map[int]bool{0: true, 7: true, 19: true, 20: true, 33: true}
	hdr, err := Header(w, h, "I420", 500_000) // ticks of 0.5 ms
	if err != nil {
		t.Fatal(err)
	}
	var stream bytes.Buffer
	stream.Write(hdr)
	frame := make([]byte, w*h*3/2)
	for i := 0; i < 40; i++ {
		for j := range frame {
			frame[j] = byte(i*5 + j%7)
		}
		ts := uint64(i*33) * 2
		if keys[i] {
			ts++
		}
		stream.Write(AppendFrameHeader(nil, ts, len(frame)))
		stream.Write(frame)
	}
	out := filepath.Join(t.TempDir(), "out.flv")
	cmd := exec.Command(ffmpeg, "-nostdin", "-v", "error", "-f", "matroska", "-i", "pipe:0",
		"-copyts", "-fps_mode", "passthrough", "-enc_time_base", "-1",
		"-force_key_frames", "expr:eq(mod(floor(t*2000+0.5),2),0)",
		"-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "100000", "-sc_threshold", "0",
		"-f", "flv", out)
	cmd.Stdin = &stream
	if msg, err := cmd.CombinedOutput(); err != nil || len(msg) > 0 {
		t.Fatalf("ffmpeg: %v: %s", err, msg)
	}
	msg, err := exec.Command(ffprobe, "-v", "error", "-show_entries", "packet=flags", "-of", "csv=p=0", out).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe: %v: %s", err, msg)
	}
	lines := strings.Fields(string(msg))
	if len(lines) != 40 {
		t.Fatalf("%d packets, want 40", len(lines))
	}
	for i, l := range lines {
		if got := strings.HasPrefix(l, "K"); got != keys[i] {
			t.Errorf("frame %d: key %v, want %v", i, got, keys[i])
		}
	}
}

func BenchmarkAppendFrameHeader(b *testing.B) {
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		buf = AppendFrameHeader(buf[:0], uint64(i), 1382400)
	}
}
