package sdk

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/control"
	"github.com/mediapipe/mediapipe/plugins/internal/pluginpb"
	"github.com/mediapipe/mediapipe/plugins/internal/shared"
)

// ServePolicy serves p as a transmission-control policy plugin
// (fec-encoder's policy = "plugin"); spec gives its name and summary (kinds
// and parameters are unused). mediapipe calls p.Decide once per control
// interval with a deadline in ctx; p.Close runs on shutdown if the process
// stops within go-plugin's 2 s grace (it is killed after). mediapipe checks
// each Decision (overheads and shares within 0 … 1, only the input's SSRCs
// and edges) and keeps its current one when Decide fails or is late.
func ServePolicy(spec core.Spec, p control.Policy) {
	serve(plugin.PluginSet{shared.KindPolicy: shared.PolicyPlugin(&policyServer{spec: spec, p: p})},
		func() { _ = p.Close() })
}

// PolicyFunc makes a function a control.Policy whose Close does nothing:
//
//	sdk.ServePolicy(spec, sdk.PolicyFunc(decide))
type PolicyFunc func(ctx context.Context, in *control.Input) (control.Decision, error)

// Decide implements control.Policy.
func (f PolicyFunc) Decide(ctx context.Context, in *control.Input) (control.Decision, error) {
	return f(ctx, in)
}

// Close implements control.Policy.
func (PolicyFunc) Close() error { return nil }

type policyServer struct {
	pluginpb.UnimplementedPolicyServer
	spec core.Spec
	p    control.Policy
}

func (s *policyServer) Describe(context.Context, *pluginpb.DescribeRequest) (*pluginpb.Description, error) {
	spec := s.spec
	spec.In, spec.Out, spec.Params = core.KindNone, core.KindNone, nil
	return &pluginpb.Description{Protocol: ProtocolVersion, Spec: shared.SpecToPB(spec)}, nil
}

func (s *policyServer) Decide(ctx context.Context, req *pluginpb.PolicyRequest) (*pluginpb.PolicyResponse, error) {
	var in control.Input
	if err := json.Unmarshal(req.GetInputJson(), &in); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "input: %v", err)
	}
	d, err := s.p.Decide(ctx, &in)
	if err != nil {
		return nil, status.Error(codes.Internal, errorLine(err))
	}
	out, err := json.Marshal(d)
	if err != nil {
		// NaN or Inf in the decision: say so here, where the author looks.
		return nil, status.Error(codes.Internal, fmt.Sprintf("encoding the decision: %v", err))
	}
	return &pluginpb.PolicyResponse{DecisionJson: out}, nil
}

// maxErrorText bounds the error text a plugin sends: mediapipe logs it
// as one line.
const maxErrorText = 256

// errorLine is err's text as mediapipe shows it: the first non-empty line,
// cut to maxErrorText bytes (plus "…") on a character boundary.
func errorLine(err error) string {
	s := strings.TrimLeft(err.Error(), " \t\r\n")
	s, _, _ = strings.Cut(s, "\n")
	s = strings.TrimRight(s, " \t\r")
	if len(s) <= maxErrorText {
		return s
	}
	n := maxErrorText
	for n > 0 && !utf8.RuneStart(s[n]) {
		n-- // not inside a character
	}
	return s[:n] + "…"
}
