// Command stream-filter is an example mediapipe stage plugin (flv → flv):
// it drops audio tags on request and passes only streams whose names match.
package main

import (
	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/plugins/examples/stream-filter/filter"
	"github.com/mediapipe/mediapipe/plugins/sdk"
)

func main() {
	sdk.ServeStage(core.Define(filter.Spec, filter.New))
}
