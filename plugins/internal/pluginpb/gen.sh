#!/bin/sh
# Regenerates plugin.pb.go and plugin_grpc.pb.go from plugin.proto.
# Needs protoc (Debian: apt-get install protobuf-compiler) and the Go plugins:
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
#   go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
# Usage: gen.sh [OUTDIR]   (default: this directory)
set -eu
dir=$(cd "$(dirname "$0")" && pwd)
out=${1:-$dir}
PATH="$(go env GOPATH)/bin:$PATH"
protoc -I "$dir" \
	--go_out="$out" --go_opt=paths=source_relative \
	--go-grpc_out="$out" --go-grpc_opt=paths=source_relative \
	"$dir/plugin.proto"
