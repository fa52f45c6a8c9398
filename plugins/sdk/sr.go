package sdk

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/sr"
	"github.com/mediapipe/mediapipe/plugins/internal/pluginpb"
	"github.com/mediapipe/mediapipe/plugins/internal/shared"
)

type srServer struct {
	pluginpb.UnimplementedSRBackendServer
	spec core.Spec
	b    sr.Backend
}

func (s *srServer) Describe(context.Context, *pluginpb.DescribeRequest) (*pluginpb.Description, error) {
	spec := s.spec
	spec.In, spec.Out, spec.Params = core.KindNone, core.KindNone, nil
	return &pluginpb.Description{Protocol: ProtocolVersion, Spec: shared.SpecToPB(spec)}, nil
}

func (s *srServer) Enhance(ctx context.Context, req *pluginpb.EnhanceRequest) (*pluginpb.EnhanceResponse, error) {
	im := req.GetImage()
	in := &sr.Image{Width: int(im.GetWidth()), Height: int(im.GetHeight()), Format: im.GetFormat(), Pix: im.GetPix()}
	if err := in.Validate(); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if req.Scale < 1 {
		return nil, status.Errorf(codes.InvalidArgument, "scale %d", req.Scale)
	}
	out, err := s.b.Enhance(ctx, in, int(req.Scale))
	if err != nil {
		return nil, status.Error(codes.Internal, errorLine(err))
	}
	if err := out.Validate(); err != nil {
		return nil, status.Error(codes.Internal, errorLine(err))
	}
	return &pluginpb.EnhanceResponse{Image: &pluginpb.Image{
		Width: int32(out.Width), Height: int32(out.Height), Format: out.Format, Pix: out.Pix,
	}}, nil
}
