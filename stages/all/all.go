// Package all links every built-in stage into a binary: import it for its
// side effect, as cmd/mediapipe does.
package all

import (
	_ "github.com/mediapipe/mediapipe/stages/flvreassembler"
	_ "github.com/mediapipe/mediapipe/stages/netsim"
	_ "github.com/mediapipe/mediapipe/stages/rtpfragmenter"
)
