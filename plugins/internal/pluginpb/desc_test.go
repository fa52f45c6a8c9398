package pluginpb

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/bufbuild/protocompile"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// TestGeneratedMatchesProto is the staleness check that needs no protoc, so
// it runs everywhere (CI too): plugin.proto compiled in pure Go must describe
// exactly what the committed plugin.pb.go embeds, and every service method
// must have its gRPC stub in plugin_grpc.pb.go. TestGeneratedIsFresh, where
// protoc is installed, also catches changes of comments only.
func TestGeneratedMatchesProto(t *testing.T) {
	c := protocompile.Compiler{Resolver: &protocompile.SourceResolver{ImportPaths: []string{"."}}}
	files, err := c.Compile(context.Background(), "plugin.proto")
	if err != nil {
		t.Fatalf("compiling plugin.proto: %v", err)
	}
	got := normalize(protodesc.ToFileDescriptorProto(files[0]))
	want := normalize(protodesc.ToFileDescriptorProto(File_plugin_proto))
	if !proto.Equal(got, want) {
		t.Fatalf("plugin.pb.go is stale: run plugins/internal/pluginpb/gen.sh (make proto) and commit the result.\n"+
			"plugin.proto describes:\n%s\nplugin.pb.go embeds:\n%s", text(got), text(want))
	}
	stubs := map[string]*grpc.ServiceDesc{
		string(Stage_ServiceDesc.ServiceName):     &Stage_ServiceDesc,
		string(SRBackend_ServiceDesc.ServiceName): &SRBackend_ServiceDesc,
		string(Policy_ServiceDesc.ServiceName):    &Policy_ServiceDesc,
	}
	svcs := files[0].Services()
	if svcs.Len() != len(stubs) {
		t.Errorf("plugin.proto has %d services, plugin_grpc.pb.go %d: plugin_grpc.pb.go is stale (make proto)", svcs.Len(), len(stubs))
	}
	for i := range svcs.Len() {
		svc := svcs.Get(i)
		desc := stubs[string(svc.FullName())]
		if desc == nil {
			t.Errorf("service %s has no stub in plugin_grpc.pb.go: it is stale (make proto)", svc.FullName())
			continue
		}
		if got, want := methods(svc), stubMethods(desc); !slices.Equal(got, want) {
			t.Errorf("service %s: plugin.proto has %v, plugin_grpc.pb.go %v: it is stale (make proto)", svc.FullName(), got, want)
		}
	}
}

// normalize drops what the two sides may fill differently without meaning
// anything for the generated code: source positions and comments.
func normalize(fd *descriptorpb.FileDescriptorProto) *descriptorpb.FileDescriptorProto {
	fd = proto.CloneOf(fd)
	fd.SourceCodeInfo = nil
	return fd
}

func text(m proto.Message) string { return prototext.MarshalOptions{Multiline: true}.Format(m) }

// methods lists a service's methods as "Name client-stream server-stream".
func methods(svc protoreflect.ServiceDescriptor) []string {
	var out []string
	for i := range svc.Methods().Len() {
		m := svc.Methods().Get(i)
		out = append(out, fmt.Sprintf("%s %v %v", m.Name(), m.IsStreamingClient(), m.IsStreamingServer()))
	}
	slices.Sort(out)
	return out
}

func stubMethods(d *grpc.ServiceDesc) []string {
	var out []string
	for _, m := range d.Methods {
		out = append(out, fmt.Sprintf("%s false false", m.MethodName))
	}
	for _, s := range d.Streams {
		out = append(out, fmt.Sprintf("%s %v %v", s.StreamName, s.ClientStreams, s.ServerStreams))
	}
	slices.Sort(out)
	return out
}
