package sharpen

import (
	"context"
	"testing"

	"github.com/mediapipe/mediapipe/core/sr"
)

func TestEnhance(t *testing.T) {
	// A flat picture stays flat (the mask adds nothing) and keeps its colour,
	// whichever channel order it came in; the result is rgb24.
	cases := []struct {
		format  string
		pixel   [3]byte // as stored
		wantRGB [3]byte
	}{
		{"rgb24", [3]byte{200, 30, 10}, [3]byte{200, 30, 10}},
		{"bgr24", [3]byte{10, 30, 200}, [3]byte{200, 30, 10}},
	}
	for _, c := range cases {
		for _, scale := range []int{1, 2, 3} {
			in := &sr.Image{Width: 8, Height: 6, Format: c.format, Pix: make([]byte, 8*6*3)}
			for i := 0; i < len(in.Pix); i += 3 {
				copy(in.Pix[i:], c.pixel[:])
			}
			out, err := Backend{Amount: 0.6}.Enhance(context.Background(), in, scale)
			if err != nil {
				t.Fatal(err)
			}
			if out.Width != 8*scale || out.Height != 6*scale || out.Format != "rgb24" || out.Validate() != nil {
				t.Fatalf("%s ×%d: %dx%d %s", c.format, scale, out.Width, out.Height, out.Format)
			}
			for i := 0; i < len(out.Pix); i += 3 {
				if [3]byte(out.Pix[i:i+3]) != c.wantRGB {
					t.Fatalf("%s ×%d: pixel %d = %v, want %v", c.format, scale, i/3, out.Pix[i:i+3], c.wantRGB)
				}
			}
		}
	}
	if _, err := (Backend{}).Enhance(context.Background(), &sr.Image{Width: 2, Height: 2, Format: "rgb24", Pix: make([]byte, 5)}, 2); err == nil {
		t.Error("a short picture was accepted")
	}
	if _, err := (Backend{}).Enhance(context.Background(), &sr.Image{Width: 2, Height: 2, Format: "yuv", Pix: make([]byte, 12)}, 2); err == nil {
		t.Error("an unknown format was accepted")
	}
}

func TestSharpens(t *testing.T) {
	// An edge gets steeper: the unsharp mask overshoots on both sides.
	in := &sr.Image{Width: 8, Height: 4, Format: "rgb24", Pix: make([]byte, 8*4*3)}
	for y := range 4 {
		for x := 4; x < 8; x++ {
			i := (y*8 + x) * 3
			in.Pix[i], in.Pix[i+1], in.Pix[i+2] = 200, 200, 200
		}
	}
	plain, _ := Backend{}.Enhance(context.Background(), in, 1)
	sharp, _ := Backend{Amount: 1}.Enhance(context.Background(), in, 1)
	at := func(im *sr.Image, x int) int { return int(im.Pix[(1*im.Width+x)*3]) }
	if !(at(sharp, 3) < at(plain, 3) || at(sharp, 4) > at(plain, 4)) {
		t.Errorf("edge not sharpened: plain %d|%d, sharp %d|%d", at(plain, 3), at(plain, 4), at(sharp, 3), at(sharp, 4))
	}
}

func BenchmarkEnhance720p(b *testing.B) {
	in := &sr.Image{Width: 640, Height: 360, Format: "rgb24", Pix: make([]byte, 640*360*3)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := (Backend{Amount: 0.6}).Enhance(context.Background(), in, 2); err != nil {
			b.Fatal(err)
		}
	}
}
