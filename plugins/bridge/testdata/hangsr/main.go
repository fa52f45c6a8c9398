// Command hangsr is an SR backend plugin for the bridge's tests: it copies
// the picture at scale 1 and never answers (ignoring its deadline) at any
// other scale.
package main

import (
	"context"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/sr"
	"github.com/mediapipe/mediapipe/plugins/sdk"
)

type backend struct{}

func (backend) Enhance(_ context.Context, in *sr.Image, scale int) (*sr.Image, error) {
	if scale != 1 {
		time.Sleep(time.Hour)
	}
	return in, nil
}

func (backend) Close() error { return nil }

func main() {
	sdk.ServeSRBackend(core.Spec{Name: "hangsr", Summary: "hangs at scale > 1"}, backend{})
}
