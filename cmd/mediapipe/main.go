// Command mediapipe runs media pipelines described in TOML files.
package main

import (
	"os"

	_ "github.com/mediapipe/mediapipe/internal/bench"
	"github.com/mediapipe/mediapipe/internal/cli"
	_ "github.com/mediapipe/mediapipe/stages/all"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr)) }
