// Command sr-sharpen is an example mediapipe SR backend plugin in pure Go:
// it resamples ×scale (Catmull-Rom) and sharpens with an unsharp mask.
package main

import (
	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/plugins/examples/sr-sharpen/sharpen"
	"github.com/mediapipe/mediapipe/plugins/sdk"
)

func main() {
	sdk.ServeSRBackend(core.Spec{
		Name:    "sr-sharpen",
		Summary: "Catmull-Rom upscale plus unsharp mask, pure Go; returns rgb24",
	}, sharpen.Backend{Amount: 0.6})
}
