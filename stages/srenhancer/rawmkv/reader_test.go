package rawmkv

import (
	"bytes"
	"errors"
	"io"
	"os/exec"
	"testing"
)

func TestReaderRoundTrip(t *testing.T) {
	hdr, err := Header(4, 2, "I420", 500_000)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.Write(hdr)
	ticks := []uint64{1, 66, 134, 201}
	for i, ts := range ticks {
		b.Write(AppendFrameHeader(nil, ts, 12))
		b.Write(bytes.Repeat([]byte{byte(i)}, 12))
	}
	r := NewReader(&b)
	buf := make([]byte, 12)
	for i, ts := range ticks {
		ms, err := r.Next(buf)
		if err != nil {
			t.Fatal(err)
		}
		if want := int64(ts) / 2; ms != want || buf[0] != byte(i) {
			t.Fatalf("frame %d: %d ms, byte %d; want %d ms", i, ms, buf[0], want)
		}
	}
	if _, err := r.Next(buf); err != io.EOF {
		t.Fatalf("at the end: %v", err)
	}
}

func TestReaderErrors(t *testing.T) {
	hdr, _ := Header(4, 2, "I420", 1_000_000)
	frame := append(AppendFrameHeader(append([]byte(nil), hdr...), 5, 12), make([]byte, 12)...)
	for _, c := range []struct {
		name string
		data []byte
		buf  int
		want error
	}{
		{"wrong size", frame, 10, ErrFrameSize},
		{"truncated", frame[:len(frame)-3], 12, io.ErrUnexpectedEOF},
		{"garbage", []byte{0, 0, 0, 0}, 12, ErrElement},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := NewReader(bytes.NewReader(c.data)).Next(make([]byte, c.buf)); !errors.Is(err, c.want) {
				t.Fatalf("err %v, want %v", err, c.want)
			}
		})
	}
}

// TestReaderFFmpeg reads what sr-enhancer's decoder writes: ffmpeg's live
// Matroska of raw yuv420p with the input's own timestamps.
func TestReaderFFmpeg(t *testing.T) {
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Skip("ffmpeg not on PATH")
	}
	const w, h = 64, 36
	out, err := exec.Command(ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=64x36:r=25",
		"-frames:v", "5", "-vf", "setpts=PTS+10/TB", "-copyts", "-fps_mode", "passthrough", "-enc_time_base", "-1",
		"-c:v", "rawvideo", "-pix_fmt", "yuv420p", "-f", "matroska", "-live", "1", "-cluster_size_limit", "1", "pipe:1").Output()
	if err != nil {
		t.Fatal(err)
	}
	r := NewReader(bytes.NewReader(out))
	buf := make([]byte, w*h*3/2)
	for i := 0; i < 5; i++ {
		ms, err := r.Next(buf)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if want := int64(10000 + i*40); ms != want {
			t.Fatalf("frame %d at %d ms, want %d", i, ms, want)
		}
	}
	if _, err := r.Next(buf); err != io.EOF {
		t.Fatalf("at the end: %v", err)
	}
}

func FuzzReader(f *testing.F) {
	hdr, _ := Header(4, 2, "I420", 1_000_000)
	f.Add(append(AppendFrameHeader(hdr, 5, 12), make([]byte, 12)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data))
		buf := make([]byte, 12)
		for i := 0; i < 100; i++ {
			if _, err := r.Next(buf); err != nil {
				return
			}
		}
	})
}
