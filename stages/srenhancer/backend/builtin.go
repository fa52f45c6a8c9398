// Package backend holds sr-enhancer's own SR backends: the pure-Go builtin
// resampler and the HTTP client of the basicKVSR protocol.
package backend

import (
	"context"
	"fmt"
	"image"

	"golang.org/x/image/draw"

	"github.com/mediapipe/mediapipe/core/sr"
)

// Builtin upscales with a Catmull-Rom filter in pure Go: no model, no
// service, so the stage works with nothing else running.
type Builtin struct{}

// NewBuiltin returns the builtin backend.
func NewBuiltin() *Builtin { return &Builtin{} }

// Enhance implements sr.Backend. The result is RGB24.
func (*Builtin) Enhance(ctx context.Context, in *sr.Image, scale int) (*sr.Image, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	if scale < 1 {
		return nil, fmt.Errorf("builtin: scale %d", scale)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	src := toRGBA(in)
	dst := image.NewRGBA(image.Rect(0, 0, in.Width*scale, in.Height*scale))
	draw.CatmullRom.Scale(dst, dst.Bounds(), src, src.Bounds(), draw.Src, nil)
	return fromRGBA(dst), nil
}

// Close implements sr.Backend.
func (*Builtin) Close() error { return nil }

// toRGBA unpacks a 3-byte image into an opaque RGBA one: x/image/draw's fast
// paths are for *image.RGBA.
func toRGBA(in *sr.Image) *image.RGBA {
	im := image.NewRGBA(image.Rect(0, 0, in.Width, in.Height))
	r, b := 0, 2
	if in.Format == "bgr24" {
		r, b = 2, 0
	}
	s, d := in.Pix, im.Pix
	for i, j := 0, 0; i+2 < len(s); i, j = i+3, j+4 {
		d[j], d[j+1], d[j+2], d[j+3] = s[i+r], s[i+1], s[i+b], 0xff
	}
	return im
}

func fromRGBA(im *image.RGBA) *sr.Image {
	w, h := im.Rect.Dx(), im.Rect.Dy()
	out := &sr.Image{Width: w, Height: h, Format: "rgb24", Pix: make([]byte, w*h*3)}
	s, d := im.Pix, out.Pix
	for i, j := 0, 0; j+2 < len(d); i, j = i+4, j+3 {
		d[j], d[j+1], d[j+2] = s[i], s[i+1], s[i+2]
	}
	return out
}
