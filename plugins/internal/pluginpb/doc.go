// Package pluginpb is the generated gRPC code of plugin.proto, the wire
// contract between mediapipe and plugin processes; internal to plugins/.
package pluginpb
