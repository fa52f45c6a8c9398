// Package sdk turns a program into a mediapipe plugin: a stage, an SR
// backend or a transmission-control policy (ServePolicy), served to
// mediapipe over hashicorp/go-plugin's gRPC transport.
//
// A stage plugin is written exactly like a built-in stage: a Config struct
// with param tags, a constructor, and a core.Stage whose Run reads in and
// emits to out. main hands them to ServeStage:
//
//	type Config struct {
//		Prefix string `param:"prefix" default:"x" doc:"what to prepend"`
//	}
//
//	func main() {
//		sdk.ServeStage(core.Define(core.Spec{
//			Name: "my-stage", Summary: "does one thing",
//			In: core.KindFLV, Out: core.KindFLV,
//		}, newStage))
//	}
//
// The SDK owns the handshake, the protocol version, gRPC message sizes and the
// batching of packets; the stage sees ordinary packets, streams and events.
// Log with env.Log: lines reach mediapipe's log under the plugin's name.
// A plugin started by hand (not by mediapipe) says so and exits 1.
package sdk

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/sr"
	"github.com/mediapipe/mediapipe/plugins/internal/shared"
)

// ProtocolVersion is the plugin protocol this SDK speaks; mediapipe refuses
// plugins built against an SDK of another version.
const ProtocolVersion = shared.ProtocolVersion

// stderr is the process's real standard error. go-plugin redirects
// os.Stderr once serving; the host reads this one line by line.
var stderr = os.Stderr

var logger = slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))

// Logger returns the plugin's logger: JSON lines on standard error, which
// mediapipe re-logs at their level under the plugin's name.
func Logger() *slog.Logger { return logger }

// ServeStage serves def as a stage plugin and returns when mediapipe stops
// the plugin. Use core.Define to make def from a spec and a constructor.
func ServeStage(def core.Definition) {
	serve(plugin.PluginSet{shared.KindStage: shared.StagePlugin(newStageServer(def))}, nil)
}

// ServeSRBackend serves b as an SR backend plugin; spec gives its name and
// summary (kinds and parameters are unused). b.Close runs on shutdown.
func ServeSRBackend(spec core.Spec, b sr.Backend) {
	serve(plugin.PluginSet{shared.KindSR: shared.SRPlugin(&srServer{spec: spec, b: b})}, func() { _ = b.Close() })
}

func serve(set plugin.PluginSet, cleanup func()) {
	go watchParent()
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: shared.Handshake,
		Plugins:         set,
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return plugin.DefaultGRPCServer(append(opts, shared.ServerOptions()...))
		},
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: stderr, JSONFormat: true}),
	})
	if cleanup != nil {
		cleanup()
	}
	stopAll()
}

// watchParent ends the plugin when mediapipe is gone without stopping it
// (killed with SIGKILL): an orphan would hold its listeners forever.
func watchParent() {
	ppid := os.Getppid()
	for range time.Tick(time.Second) {
		if os.Getppid() != ppid {
			logger.Warn("mediapipe went away; exiting")
			os.Exit(0)
		}
	}
}

// base is the context of everything the plugin runs; cancelled when
// mediapipe stops the plugin, so stages' listeners close.
var base, stopAll = context.WithCancel(context.Background())
