package bench

// Every built-in stage, linked as in the mediapipe binary, so the bench can
// run whatever pipeline the binary can.
import _ "github.com/mediapipe/mediapipe/stages/all"
