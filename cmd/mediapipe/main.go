// Command mediapipe runs media pipelines described in TOML files.
package main

import (
	"fmt"
	"os"

	"github.com/mediapipe/mediapipe/core"
	_ "github.com/mediapipe/mediapipe/internal/bench"
	"github.com/mediapipe/mediapipe/internal/cli"
	"github.com/mediapipe/mediapipe/plugins/bridge"
	"github.com/mediapipe/mediapipe/plugins/sdk"
	_ "github.com/mediapipe/mediapipe/stages/all"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == bridge.ServeStageCommand {
		os.Exit(serveStage(os.Args[2:]))
	}
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}

// serveStage is the hidden subcommand an isolate = true stage runs in: this
// binary serving one built-in stage through the plugin SDK, so the bridge
// runs it exactly as it runs a plugin. It is not in the usage text: only the
// bridge starts it.
func serveStage(args []string) int {
	if len(args) != 1 {
		fmt.Fprintf(os.Stderr, "usage: mediapipe %s STAGE (started by mediapipe for isolate = true)\n", bridge.ServeStageCommand)
		return 2
	}
	def, ok := core.Default.Lookup(args[0])
	if !ok {
		fmt.Fprintf(os.Stderr, "mediapipe %s: unknown stage %q\n", bridge.ServeStageCommand, args[0])
		return 2
	}
	sdk.ServeStage(def)
	return 0
}
