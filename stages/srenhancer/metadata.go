package srenhancer

import (
	"encoding/binary"
	"math"

	"github.com/mediapipe/mediapipe/core/media/amf0"
)

// patchMetadata multiplies the width and height of an onMetaData script
// tag body by scale (rounded down to even, like the output), in place. It
// reports whether body was onMetaData; anything it cannot read is left as is.
func patchMetadata(body []byte, scale int) bool {
	return amf0.MetaNumbers(body, func(key []byte, at int) {
		if k := string(key); k != "width" && k != "height" {
			return
		}
		v := math.Float64frombits(binary.BigEndian.Uint64(body[at:]))
		if v > 0 && v < 1<<16 {
			binary.BigEndian.PutUint64(body[at:], math.Float64bits(float64(outSize(int(v), scale))))
		}
	})
}
