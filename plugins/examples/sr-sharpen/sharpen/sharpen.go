// Package sharpen is the SR backend of the sr-sharpen example plugin:
// resample ×scale with golang.org/x/image/draw, then an unsharp mask.
package sharpen

import (
	"context"
	"fmt"
	"image"

	"golang.org/x/image/draw"

	"github.com/mediapipe/mediapipe/core/sr"
)

// Backend implements sr.Backend. Amount is the unsharp mask strength
// (0: plain resample). The result is always rgb24.
type Backend struct {
	Amount float64
}

// Enhance implements sr.Backend.
func (b Backend) Enhance(ctx context.Context, in *sr.Image, scale int) (*sr.Image, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	if scale < 1 || scale > 8 {
		return nil, fmt.Errorf("sr-sharpen: scale %d out of 1..8", scale)
	}
	var ri, bi int
	switch in.Format {
	case "rgb24", "":
		ri, bi = 0, 2
	case "bgr24":
		ri, bi = 2, 0
	default:
		return nil, fmt.Errorf("sr-sharpen: unknown format %q", in.Format)
	}
	src := image.NewRGBA(image.Rect(0, 0, in.Width, in.Height))
	for i, j := 0, 0; i < len(in.Pix); i, j = i+3, j+4 {
		src.Pix[j], src.Pix[j+1], src.Pix[j+2], src.Pix[j+3] = in.Pix[i+ri], in.Pix[i+1], in.Pix[i+bi], 255
	}
	w, h := in.Width*scale, in.Height*scale
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.CatmullRom.Scale(dst, dst.Bounds(), src, src.Bounds(), draw.Src, nil)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := &sr.Image{Width: w, Height: h, Format: "rgb24", Pix: make([]byte, w*h*3)}
	unsharp(out.Pix, dst, b.Amount)
	return out, nil
}

// unsharp writes dst + amount·(dst − blur(dst)) as packed RGB into pix,
// with a 3×3 box blur.
func unsharp(pix []byte, im *image.RGBA, amount float64) {
	w, h := im.Rect.Dx(), im.Rect.Dy()
	at := func(x, y, c int) int {
		x = min(max(x, 0), w-1)
		y = min(max(y, 0), h-1)
		return int(im.Pix[y*im.Stride+x*4+c])
	}
	k := int(amount * 256)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			for c := 0; c < 3; c++ {
				sum := 0
				for dy := -1; dy <= 1; dy++ {
					for dx := -1; dx <= 1; dx++ {
						sum += at(x+dx, y+dy, c)
					}
				}
				v := at(x, y, c)
				v += (v - sum/9) * k / 256
				pix[(y*w+x)*3+c] = byte(min(max(v, 0), 255))
			}
		}
	}
}

// Close implements sr.Backend.
func (Backend) Close() error { return nil }
