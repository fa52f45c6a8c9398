// Command stream-rename is an example mediapipe stage plugin (flv → flv):
// it serves streams under other names, given as a TOML table.
package main

import (
	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/plugins/examples/stream-rename/rename"
	"github.com/mediapipe/mediapipe/plugins/sdk"
)

func main() {
	sdk.ServeStage(core.Define(rename.Spec, rename.New))
}
