package srenhancer

import "github.com/mediapipe/mediapipe/core/sr"

// toI420 writes the top-left ow×oh of im (rgb24 or bgr24, at least that
// large) into dst as yuv420p, BT.601 limited range: what swscale assumes for
// the rest of the stream, so keyframes do not shift in colour.
func toI420(im *sr.Image, dst []byte, ow, oh int) {
	ri, bi := 0, 2
	if im.Format == "bgr24" {
		ri, bi = 2, 0
	}
	stride := im.Width * 3
	yp := dst[:ow*oh]
	up := dst[ow*oh : ow*oh+ow*oh/4]
	vp := dst[ow*oh+ow*oh/4 : ow*oh*3/2]
	cw := ow / 2
	for y := 0; y+1 < oh; y += 2 {
		r0 := im.Pix[y*stride : y*stride+ow*3]
		r1 := im.Pix[(y+1)*stride : (y+1)*stride+ow*3]
		y0 := yp[y*ow : y*ow+ow]
		y1 := yp[(y+1)*ow : (y+1)*ow+ow]
		uRow := up[(y/2)*cw : (y/2)*cw+cw]
		vRow := vp[(y/2)*cw : (y/2)*cw+cw]
		for x := 0; x+1 < ow; x += 2 {
			i := x * 3
			ra, ga, ba := int32(r0[i+ri]), int32(r0[i+1]), int32(r0[i+bi])
			rb, gb, bb := int32(r0[i+3+ri]), int32(r0[i+4]), int32(r0[i+3+bi])
			rc, gc, bc := int32(r1[i+ri]), int32(r1[i+1]), int32(r1[i+bi])
			rd, gd, bd := int32(r1[i+3+ri]), int32(r1[i+4]), int32(r1[i+3+bi])
			y0[x] = luma(ra, ga, ba)
			y0[x+1] = luma(rb, gb, bb)
			y1[x] = luma(rc, gc, bc)
			y1[x+1] = luma(rd, gd, bd)
			r := (ra + rb + rc + rd + 2) >> 2
			g := (ga + gb + gc + gd + 2) >> 2
			b := (ba + bb + bc + bd + 2) >> 2
			uRow[x/2] = uint8(((-38*r - 74*g + 112*b + 128) >> 8) + 128)
			vRow[x/2] = uint8(((112*r - 94*g - 18*b + 128) >> 8) + 128)
		}
	}
}

func luma(r, g, b int32) uint8 { return uint8(((66*r + 129*g + 25*b + 128) >> 8) + 16) }
