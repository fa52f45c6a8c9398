package srenhancer

import (
	"testing"

	"github.com/mediapipe/mediapipe/core/sr"
)

func TestToI420(t *testing.T) {
	for _, c := range []struct {
		name    string
		format  string
		r, g, b byte
		y, u, v byte
	}{
		{"white", "rgb24", 255, 255, 255, 235, 128, 128},
		{"black", "bgr24", 0, 0, 0, 16, 128, 128},
		{"red rgb", "rgb24", 255, 0, 0, 82, 90, 240},
		{"red bgr", "bgr24", 255, 0, 0, 82, 90, 240},
	} {
		t.Run(c.name, func(t *testing.T) {
			const w, h = 6, 4
			im := &sr.Image{Width: w + 1, Height: h + 1, Format: c.format, Pix: make([]byte, (w+1)*(h+1)*3)}
			for i := 0; i < len(im.Pix); i += 3 {
				if c.format == "rgb24" {
					im.Pix[i], im.Pix[i+1], im.Pix[i+2] = c.r, c.g, c.b
				} else {
					im.Pix[i], im.Pix[i+1], im.Pix[i+2] = c.b, c.g, c.r
				}
			}
			dst := make([]byte, w*h*3/2)
			toI420(im, dst, w, h)
			for i, got := range dst {
				want := c.y
				if i >= w*h {
					want = c.u
				}
				if i >= w*h*5/4 {
					want = c.v
				}
				if got != want {
					t.Fatalf("byte %d = %d, want %d", i, got, want)
				}
			}
		})
	}
}

func BenchmarkToI420(b *testing.B) {
	im := &sr.Image{Width: 1280, Height: 720, Format: "bgr24", Pix: make([]byte, 1280*720*3)}
	dst := make([]byte, 1280*720*3/2)
	b.ReportAllocs()
	for b.Loop() {
		toI420(im, dst, 1280, 720)
	}
}
