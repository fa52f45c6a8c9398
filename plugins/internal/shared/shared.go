// Package shared is what the plugin host (bridge) and the SDK agree on: the
// handshake, the go-plugin plugin set, gRPC limits and type converters.
package shared

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/mem"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/plugins/internal/pluginpb"
)

// ProtocolVersion is the plugin protocol this code speaks. Bump it on any
// incompatible change of plugin.proto or of the Run conversation.
const ProtocolVersion = 1

// Handshake is the go-plugin handshake; the cookie keeps a plugin from being
// run by hand and other programs' plugins from being mistaken for ours.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "MEDIAPIPE_PLUGIN",
	MagicCookieValue: "7d1f6c0e-mediapipe-stage-plugin",
}

// Names of the plugin kinds in the go-plugin plugin set.
const (
	KindStage  = "stage"
	KindSR     = "sr-backend"
	KindPolicy = "policy"
)

// MaxMessage bounds one gRPC message either way: a 4K RGB picture scaled ×2
// is 100 MB.
const MaxMessage = 256 << 20

// Flow-control windows large enough that a batch of packets never waits for
// a window update on loopback.
const (
	streamWindow = 4 << 20
	connWindow   = 16 << 20
)

// DefaultBatch is the most packets per Run message when the host asks for none.
const DefaultBatch = 64

// gRPC's default buffer pool jumps from 32 KB to 1 MB buffers and zeroes
// each one it hands out: a 40 KB batch of packets cost a 1 MB clear on every
// receive. Power-of-two tiers up to 16 MB keep that clear at most twice the
// message. The pool is process-wide; this runs in the host and in plugins.
func init() {
	pool, err := mem.NewBinaryTieredBufferPool(8, 12, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24)
	if err != nil {
		panic(err)
	}
	experimental.SetDefaultBufferPool(pool)
}

// ServerOptions are the gRPC server options a plugin serves with.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxMessage), grpc.MaxSendMsgSize(MaxMessage),
		grpc.InitialWindowSize(streamWindow), grpc.InitialConnWindowSize(connWindow),
		grpc.ForceServerCodecV2(Codec),
	}
}

// DialOptions are the gRPC options the host dials a plugin with.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessage), grpc.MaxCallSendMsgSize(MaxMessage)),
		grpc.WithInitialWindowSize(streamWindow), grpc.WithInitialConnWindowSize(connWindow),
	}
}

// StagePlugin is the go-plugin glue of the Stage service. The host uses it
// with impl nil.
func StagePlugin(impl pluginpb.StageServer) plugin.Plugin {
	return &grpcPlugin[pluginpb.StageServer, pluginpb.StageClient]{
		impl: impl, register: pluginpb.RegisterStageServer, client: pluginpb.NewStageClient,
	}
}

// SRPlugin is the go-plugin glue of the SRBackend service. The host uses it
// with impl nil.
func SRPlugin(impl pluginpb.SRBackendServer) plugin.Plugin {
	return &grpcPlugin[pluginpb.SRBackendServer, pluginpb.SRBackendClient]{
		impl: impl, register: pluginpb.RegisterSRBackendServer, client: pluginpb.NewSRBackendClient,
	}
}

// PolicyPlugin is the go-plugin glue of the Policy service. The host uses
// it with impl nil.
func PolicyPlugin(impl pluginpb.PolicyServer) plugin.Plugin {
	return &grpcPlugin[pluginpb.PolicyServer, pluginpb.PolicyClient]{
		impl: impl, register: pluginpb.RegisterPolicyServer, client: pluginpb.NewPolicyClient,
	}
}

// grpcPlugin is go-plugin's glue for one gRPC service S of the generated
// code: the plugin serves impl, the host gets a client C.
type grpcPlugin[S, C any] struct {
	plugin.NetRPCUnsupportedPlugin
	impl     S
	register func(grpc.ServiceRegistrar, S)
	client   func(grpc.ClientConnInterface) C
}

// go-plugin asks for these methods at run time: have the compiler check them.
var _ plugin.GRPCPlugin = (*grpcPlugin[pluginpb.StageServer, pluginpb.StageClient])(nil)

func (p *grpcPlugin[S, C]) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	p.register(s, p.impl)
	return nil
}

func (p *grpcPlugin[S, C]) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return p.client(c), nil
}

func kindText(k core.Kind) string {
	if k == core.KindNone {
		return ""
	}
	return k.String()
}

// SpecToPB converts a spec for Describe.
func SpecToPB(s core.Spec) *pluginpb.Spec {
	out := &pluginpb.Spec{Name: s.Name, Summary: s.Summary, In: kindText(s.In), Out: kindText(s.Out), Sample: s.Sample}
	for _, p := range s.Params {
		out.Params = append(out.Params, &pluginpb.Param{
			Name: p.Name, Type: string(p.Type), Doc: p.Doc, Default: p.Default,
			Required: p.Required, Secret: p.Secret, Min: p.Min, Max: p.Max, Enum: p.Enum,
		})
	}
	return out
}

// SpecFromPB converts a described spec, refusing what core could not use.
func SpecFromPB(s *pluginpb.Spec) (core.Spec, error) {
	if s == nil || s.Name == "" {
		return core.Spec{}, fmt.Errorf("it describes no stage name")
	}
	in, err := core.ParseKind(s.In)
	if err != nil {
		return core.Spec{}, fmt.Errorf("input %w", err)
	}
	out, err := core.ParseKind(s.Out)
	if err != nil {
		return core.Spec{}, fmt.Errorf("output %w", err)
	}
	spec := core.Spec{Name: s.Name, Summary: s.Summary, In: in, Out: out, Params: []core.Param{}, Sample: s.Sample}
	for _, p := range s.Params {
		t := core.ParamType(p.Type)
		if !t.Valid() {
			return core.Spec{}, fmt.Errorf("parameter %q has unknown type %q", p.Name, p.Type)
		}
		spec.Params = append(spec.Params, core.Param{
			Name: p.Name, Type: t, Doc: p.Doc, Default: p.Default, Required: p.Required,
			Secret: p.Secret, Min: p.Min, Max: p.Max, Enum: p.Enum,
		})
	}
	return spec, nil
}

// ValueToPB converts one value normalized by core.Param.Normalize.
func ValueToPB(v any) (*pluginpb.Value, error) {
	switch x := v.(type) {
	case string:
		return &pluginpb.Value{V: &pluginpb.Value_Str{Str: x}}, nil
	case int64:
		return &pluginpb.Value{V: &pluginpb.Value_Int{Int: x}}, nil
	case float64:
		return &pluginpb.Value{V: &pluginpb.Value_Float{Float: x}}, nil
	case bool:
		return &pluginpb.Value{V: &pluginpb.Value_Bool{Bool: x}}, nil
	case time.Duration:
		return &pluginpb.Value{V: &pluginpb.Value_Str{Str: x.String()}}, nil
	case []string:
		return &pluginpb.Value{V: &pluginpb.Value_List{List: &pluginpb.StringList{Items: x}}}, nil
	case map[string]any:
		m := &pluginpb.ValueMap{Entries: make(map[string]*pluginpb.Value, len(x))}
		for k, e := range x {
			if _, nested := e.(map[string]any); nested {
				return nil, fmt.Errorf("%s: a table inside a table is not a parameter value", k)
			}
			pv, err := ValueToPB(e)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			m.Entries[k] = pv
		}
		return &pluginpb.Value{V: &pluginpb.Value_Map{Map: m}}, nil
	}
	return nil, fmt.Errorf("unsupported value %T", v)
}

// ValueFromPB returns a value core.Param.Normalize accepts.
func ValueFromPB(v *pluginpb.Value) any {
	switch x := v.GetV().(type) {
	case *pluginpb.Value_Str:
		return x.Str
	case *pluginpb.Value_Int:
		return x.Int
	case *pluginpb.Value_Float:
		return x.Float
	case *pluginpb.Value_Bool:
		return x.Bool
	case *pluginpb.Value_List:
		return append([]string{}, x.List.GetItems()...)
	case *pluginpb.Value_Map:
		m := make(map[string]any, len(x.Map.GetEntries()))
		for k, e := range x.Map.GetEntries() {
			m[k] = ValueFromPB(e)
		}
		return m
	}
	return nil
}

// Clamp converts a batch size from the wire into a sane bound.
func Clamp(n int32) int {
	if n <= 0 {
		return DefaultBatch
	}
	return int(min(n, math.MaxInt16))
}
