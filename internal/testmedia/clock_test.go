package testmedia

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/draw"
	"image/jpeg"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// clockImage is a yuv420p frame of w x h with the clock code of ms drawn in
// a noisy field, as an image.
func clockImage(w, h int, ms int64, rng *rand.Rand) *image.YCbCr {
	img := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420)
	for i := range img.Y {
		img.Y[i] = byte(lumaField + rng.IntN(60) - 30)
	}
	for i := range img.Cb {
		img.Cb[i], img.Cr[i] = byte(100+rng.IntN(56)), byte(100+rng.IntN(56))
	}
	DrawClock(img.Y, w, img.YStride, ms)
	return img
}

// The code survives a lossy JPEG at low quality, pixel noise on top and a
// scale to another size, for stamps across the range in use; a frame
// without a code, or with one block flipped, reads as no stamp.
func TestClockRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	stamps := []int64{1, time.Now().UnixMilli(), 1<<42 - 1, time.Date(2026, 12, 5, 16, 0, 0, 123e6, time.UTC).UnixMilli()}
	for range 6 {
		stamps = append(stamps, time.Now().UnixMilli()+rng.Int64N(1e12))
	}
	for _, size := range [][2]int{{640, 360}, {1280, 720}, {320, 180}} {
		for _, ms := range stamps {
			img := clockImage(size[0], size[1], ms, rng)
			var buf bytes.Buffer
			if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 30}); err != nil {
				t.Fatal(err)
			}
			dec, err := jpeg.Decode(&buf)
			if err != nil {
				t.Fatal(err)
			}
			// Salt the decoded picture with more noise.
			gray := image.NewGray(dec.Bounds())
			for y := range size[1] {
				for x := range size[0] {
					r, _, _, _ := dec.At(x, y).RGBA()
					v := int(r>>8) + rng.IntN(41) - 20
					gray.Pix[y*gray.Stride+x] = byte(min(max(v, 0), 255))
				}
			}
			got, ok := ReadClock(gray)
			if !ok || got.UnixMilli() != ms {
				t.Fatalf("%dx%d: stamp %d read back as %v (%v)", size[0], size[1], ms, got.UnixMilli(), ok)
			}
			// Nearest-neighbour scaling to half and 1.5 times the size.
			for _, f := range []float64{0.5, 1.5} {
				sw, sh := int(float64(size[0])*f), int(float64(size[1])*f)
				scaled := image.NewGray(image.Rect(0, 0, sw, sh))
				for y := range sh {
					for x := range sw {
						scaled.Pix[y*sw+x] = gray.Pix[int(float64(y)/f)*gray.Stride+int(float64(x)/f)]
					}
				}
				if got, ok := ReadClock(scaled); !ok || got.UnixMilli() != ms {
					t.Fatalf("%dx%d scaled by %v: stamp %d read back as %v (%v)", size[0], size[1], f, ms, got.UnixMilli(), ok)
				}
			}
		}
	}

	blank := image.NewGray(image.Rect(0, 0, 640, 360))
	if _, ok := ReadClock(blank); ok {
		t.Error("a blank frame read as a stamp")
	}
	if _, ok := ReadClock(image.NewGray(image.Rect(0, 0, 8, 8))); ok {
		t.Error("a tiny image read as a stamp")
	}
	img := clockImage(640, 360, time.Now().UnixMilli(), rng)
	b := 640 / clockColumns
	for bit := range clockDataBits {
		flipped := image.NewYCbCr(img.Rect, img.SubsampleRatio)
		copy(flipped.Y, img.Y)
		row, col := bit/(clockDataBits/2), 1+bit%(clockDataBits/2)
		x0, y0 := (col+1)*b, (row+1)*b
		v := flipped.Y[y0*flipped.YStride+x0]
		for y := y0; y < y0+b; y++ {
			for x := x0; x < x0+b; x++ {
				flipped.Y[y*flipped.YStride+x] = lumaBlack + lumaWhite - v
			}
		}
		if got, ok := ReadClock(flipped); ok {
			t.Fatalf("bit %d flipped: read %v as valid", bit, got.UnixMilli())
		}
	}
}

// A clock stream encoded by ffmpeg's x264 at a modest bitrate, decoded by
// ffmpeg: every frame reads back, the stamps increase by about a frame
// each, and each lies between the push's start and end.
func TestPushClockDecodes(t *testing.T) {
	NeedFFmpeg(t)
	path := filepath.Join(t.TempDir(), "clock.flv")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	started := time.Now()
	cmd := PushClock(t, ctx, path, ClockOptions{Bitrate: "300k"})
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("ffmpeg: %v\n%s", err, Stderr(cmd))
		}
	case <-time.After(ffmpegTimeout):
		t.Fatalf("ffmpeg still running %v after its input ended", ffmpegTimeout)
	}
	ended := time.Now()
	frames := FrameMD5(t, path)
	audio := 0
	for _, f := range frames {
		if f.Stream == 1 {
			audio++
		}
	}
	if audio == 0 {
		t.Error("no audio packets in the clock stream")
	}

	var stamps []time.Time
	dctx, dcancel := context.WithTimeout(context.Background(), ffmpegTimeout)
	defer dcancel()
	err := ClockFrames(dctx, path, 640, 360, 1000, func(img *image.Gray, _ time.Time) bool {
		got, ok := ReadClock(img)
		if !ok {
			t.Errorf("frame %d: no clock", len(stamps))
		}
		stamps = append(stamps, got)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	// 2 s at 30 fps; ffmpeg's start-up eats into it on a busy machine.
	if len(stamps) < 30 || len(stamps) > 62 {
		t.Fatalf("%d frames in a 2 s push at 30 fps", len(stamps))
	}
	for i, s := range stamps {
		if s.Before(started.Truncate(time.Millisecond)) || s.After(ended) {
			t.Fatalf("frame %d stamped %v, outside the push (%v .. %v)", i, s, started, ended)
		}
		if i > 0 {
			if d := s.Sub(stamps[i-1]); d <= 0 || d > 500*time.Millisecond {
				t.Fatalf("frame %d: %v after the previous one, want about 33 ms", i, d)
			}
		}
	}
	// Frames are made at 30 fps by the wall clock: most of them 33 ms apart.
	var gaps []time.Duration
	for i := 1; i < len(stamps); i++ {
		gaps = append(gaps, stamps[i].Sub(stamps[i-1]))
	}
	slices.Sort(gaps)
	if med := gaps[len(gaps)/2]; med < 25*time.Millisecond || med > 45*time.Millisecond {
		t.Errorf("median gap between frames' stamps %v, want about 33 ms", med)
	}
	t.Logf("%d frames, %d audio packets, stamps %v .. %v after the start", len(stamps), audio,
		stamps[0].Sub(started).Round(time.Millisecond), stamps[len(stamps)-1].Sub(started).Round(time.Millisecond))
}

// ClockJS decodes as ReadClock does: run under node with a stub canvas that
// hands it the RGBA pixels of a noisy frame (skipped without node).
func TestClockJS(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not found on PATH")
	}
	rng := rand.New(rand.NewPCG(3, 4))
	ms := time.Now().UnixMilli()
	img := clockImage(640, 360, ms, rng)
	rgba := image.NewRGBA(img.Rect)
	draw.Draw(rgba, rgba.Rect, img, image.Point{}, draw.Src)
	raw := filepath.Join(t.TempDir(), "frame.rgba")
	if err := os.WriteFile(raw, rgba.Pix, 0o600); err != nil {
		t.Fatal(err)
	}
	script := `
const fs = require('fs');
const px = new Uint8ClampedArray(fs.readFileSync(process.argv[2]));
globalThis.window = globalThis;
globalThis.document = {createElement: () => ({getContext: () => ({
  drawImage: () => {},
  getImageData: (x, y, w, h) => ({data: px.subarray(0, w * h * 4)}),
})})};
` + ClockJS + `
console.log(JSON.stringify([
  window.mediapipeReadClock({videoWidth: 640, videoHeight: 360}),
  window.mediapipeReadClock({videoWidth: 0, videoHeight: 0}),
]));`
	js := filepath.Join(t.TempDir(), "clock.js")
	if err := os.WriteFile(js, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, node, js, raw).CombinedOutput()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, out)
	}
	if got, want := strings.TrimSpace(string(out)), fmt.Sprintf("[%d,null]", ms); got != want {
		t.Fatalf("mediapipeReadClock: %s, want %s", got, want)
	}
}
