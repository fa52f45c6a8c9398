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
// with a 3×3 box blur (edges clamped). The blur is separable: horizontal
// sums of three rows are kept and rolled down the picture.
func unsharp(pix []byte, im *image.RGBA, amount float64) {
	w, h := im.Rect.Dx(), im.Rect.Dy()
	k := int32(amount * 256)
	hsum := func(y int, dst []int32) {
		row := im.Pix[y*im.Stride:]
		for x := 0; x < w; x++ {
			l, r := max(x-1, 0)*4, min(x+1, w-1)*4
			m := x * 4
			for c := 0; c < 3; c++ {
				dst[x*3+c] = int32(row[l+c]) + int32(row[m+c]) + int32(row[r+c])
			}
		}
	}
	prev, cur, next := make([]int32, w*3), make([]int32, w*3), make([]int32, w*3)
	hsum(0, prev)
	hsum(0, cur)
	hsum(min(1, h-1), next)
	for y := 0; y < h; y++ {
		row := im.Pix[y*im.Stride:]
		o := pix[y*w*3 : (y+1)*w*3]
		for x := 0; x < w; x++ {
			for c := 0; c < 3; c++ {
				i := x*3 + c
				v := int32(row[x*4+c])
				blur := (prev[i] + cur[i] + next[i]) / 9
				v += (v - blur) * k / 256
				o[i] = byte(min(max(v, 0), 255))
			}
		}
		prev, cur, next = cur, next, prev
		hsum(min(y+2, h-1), next)
	}
}

// Close implements sr.Backend.
func (Backend) Close() error { return nil }
