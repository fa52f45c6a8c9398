// Package all links every built-in stage into a binary: import it for its
// side effect, as cmd/mediapipe does.
package all

import (
	_ "github.com/mediapipe/mediapipe/stages/fec"
	_ "github.com/mediapipe/mediapipe/stages/flvfilesink"
	_ "github.com/mediapipe/mediapipe/stages/flvreassembler"
	_ "github.com/mediapipe/mediapipe/stages/flvtagger"
	_ "github.com/mediapipe/mediapipe/stages/hlssink"
	_ "github.com/mediapipe/mediapipe/stages/httpflvsink"
	_ "github.com/mediapipe/mediapipe/stages/netsim"
	_ "github.com/mediapipe/mediapipe/stages/quicretransmit"
	_ "github.com/mediapipe/mediapipe/stages/rtmpsource"
	_ "github.com/mediapipe/mediapipe/stages/rtpfragmenter"
	_ "github.com/mediapipe/mediapipe/stages/rtpreorder"
	_ "github.com/mediapipe/mediapipe/stages/srenhancer"
	_ "github.com/mediapipe/mediapipe/stages/udpsink"
	_ "github.com/mediapipe/mediapipe/stages/udpsource"
)
