package bench

// The relay's stages, linked here so the bench runs whatever the binary's
// stages/all lists.
import (
	_ "github.com/mediapipe/mediapipe/stages/flvreassembler"
	_ "github.com/mediapipe/mediapipe/stages/flvtagger"
	_ "github.com/mediapipe/mediapipe/stages/httpflvsink"
	_ "github.com/mediapipe/mediapipe/stages/netsim"
	_ "github.com/mediapipe/mediapipe/stages/quicretransmit"
	_ "github.com/mediapipe/mediapipe/stages/rtmpsource"
	_ "github.com/mediapipe/mediapipe/stages/rtpfragmenter"
	_ "github.com/mediapipe/mediapipe/stages/rtpreorder"
	_ "github.com/mediapipe/mediapipe/stages/udpsink"
	_ "github.com/mediapipe/mediapipe/stages/udpsource"
)
