// Command policy-worst-loss is an example mediapipe transmission-control
// policy plugin (fec-encoder's policy = "plugin"): each stream's FEC overhead
// follows the loss of its worst edge, between a floor and a ceiling, and
// every edge gets an equal share of the repair budget.
package main

import (
	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/plugins/examples/policy-worst-loss/worstloss"
	"github.com/mediapipe/mediapipe/plugins/sdk"
)

func main() {
	sdk.ServePolicy(core.Spec{
		Name:    "policy-worst-loss",
		Summary: "FEC overhead from the worst edge's loss (×2, 5 % … 50 %), equal repair shares",
	}, worstloss.Default)
}
