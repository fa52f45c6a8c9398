// Command badpolicy is a policy plugin that misbehaves on request, for the
// bridge's tests: the first stream's name in the input says how. It speaks
// the wire protocol itself (not sdk.ServePolicy), so it can answer what the
// SDK would never send.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mediapipe/mediapipe/plugins/internal/pluginpb"
	"github.com/mediapipe/mediapipe/plugins/internal/shared"
)

type server struct {
	pluginpb.UnimplementedPolicyServer
}

func (server) Describe(context.Context, *pluginpb.DescribeRequest) (*pluginpb.Description, error) {
	return &pluginpb.Description{Protocol: shared.ProtocolVersion, Spec: &pluginpb.Spec{Name: "badpolicy"}}, nil
}

// answers are the decisions (raw JSON) by mode; %d is the first stream's SSRC.
var answers = map[string]string{
	"ok":               `{"streams":{"%d":{"overhead":0.25,"pace_bytes_per_second":1e6}},"repair_shares":{"1":0.5},"reason":"fine"}`,
	"garbage":          `{"streams":{"%d":{"overhead":`,
	"not-object":       `[0.1]`,
	"empty":            ``,
	"unknown-field":    `{"streams":{"%d":{"overhed":0.1}}}`,
	"trailing":         `{"streams":{}} {"streams":{}}`,
	"trailing-brace":   `{"streams":{}}}`,
	"trailing-bracket": `{"streams":{}}]`,
	"nan":              `{"streams":{"%d":{"overhead":NaN}}}`,
	"negative":         `{"streams":{"%d":{"overhead":-0.1}}}`,
	"over-one":         `{"streams":{"%d":{"overhead":1.5}}}`,
	"pace-negative":    `{"streams":{"%d":{"overhead":0.1,"pace_bytes_per_second":-5}}}`,
	"unknown-ssrc":     `{"streams":{"999999":{"overhead":0.1}}}`,
	"unknown-edge":     `{"repair_shares":{"77":0.1}}`,
	"share-range":      `{"repair_shares":{"1":1.2}}`,
	"shares-sum":       `{"repair_shares":{"1":0.6,"2":0.6}}`,
}

func (server) Decide(ctx context.Context, req *pluginpb.PolicyRequest) (*pluginpb.PolicyResponse, error) {
	var in struct {
		Streams []struct {
			Stream string `json:"stream"`
			SSRC   uint32 `json:"ssrc"`
		} `json:"streams"`
	}
	if err := json.Unmarshal(req.InputJson, &in); err != nil || len(in.Streams) == 0 {
		return nil, status.Errorf(codes.InvalidArgument, "input: %v", err)
	}
	mode, ssrc := in.Streams[0].Stream, in.Streams[0].SSRC
	switch mode {
	case "hang": // ignores its deadline
		time.Sleep(time.Hour)
	case "crash":
		fmt.Fprintln(os.Stderr, "badpolicy: crashing as asked")
		os.Exit(3)
	case "error":
		return nil, status.Error(codes.Internal, "model not loaded")
	case "multiline-error": // a stack trace, say: the host keeps one bounded line
		return nil, status.Error(codes.Internal, "\n  model not loaded: "+strings.Repeat("x", 1000)+"\ngoroutine 1 [running]:\nmain.main()")
	case "huge": // over the bridge's 1 MiB limit on a decision
		return &pluginpb.PolicyResponse{DecisionJson: []byte(`{"reason":"` + strings.Repeat("x", 2<<20) + `"}`)}, nil
	}
	a, ok := answers[mode]
	if !ok {
		return nil, status.Errorf(codes.InvalidArgument, "unknown mode %q", mode)
	}
	if strings.Contains(a, "%d") {
		a = fmt.Sprintf(a, ssrc)
	}
	return &pluginpb.PolicyResponse{DecisionJson: []byte(a)}, nil
}

func main() {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: shared.Handshake,
		Plugins:         plugin.PluginSet{shared.KindPolicy: shared.PolicyPlugin(server{})},
		GRPCServer:      plugin.DefaultGRPCServer,
	})
}
