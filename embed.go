// Package mediapipe holds what the binary embeds from the repository root:
// the default pipeline file that `mediapipe run` uses with no FILE.
package mediapipe

import _ "embed"

// ExamplePipeline is pipeline.example.toml: cloud and edge on loopback.
//
//go:embed pipeline.example.toml
var ExamplePipeline []byte

// ExamplePipelineName is the file name ExamplePipeline is known by.
const ExamplePipelineName = "pipeline.example.toml"
