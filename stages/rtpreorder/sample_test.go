package rtpreorder

import (
	"testing"

	"github.com/mediapipe/mediapipe/core/stagetest"
)

// TestSample checks the example block is valid TOML with valid parameters.
func TestSample(t *testing.T) {
	stagetest.CheckSample(t, []byte(Sample), "rtp-reorder")
}
