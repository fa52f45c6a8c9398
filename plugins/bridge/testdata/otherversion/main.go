// Command otherversion is a stage plugin that speaks another plugin protocol
// version, for the bridge's tests.
package main

import (
	"github.com/hashicorp/go-plugin"

	"github.com/mediapipe/mediapipe/plugins/internal/shared"
)

func main() {
	hs := shared.Handshake
	hs.ProtocolVersion = shared.ProtocolVersion + 1
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: hs,
		Plugins:         plugin.PluginSet{shared.KindStage: shared.StagePlugin(nil)},
		GRPCServer:      plugin.DefaultGRPCServer,
	})
}
