// Package deps pins the modules the stages are built on while they are being
// written, so go.mod and go.sum hold them for every package at once.
package deps

import (
	_ "github.com/hashicorp/go-plugin"
	_ "github.com/knadh/koanf/parsers/toml/v2"
	_ "github.com/knadh/koanf/providers/file"
	_ "github.com/knadh/koanf/providers/rawbytes"
	_ "github.com/knadh/koanf/v2"
	_ "github.com/pion/rtcp"
	_ "github.com/pion/rtp"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "github.com/quic-go/quic-go"
	_ "github.com/yutopp/go-flv"
	_ "github.com/yutopp/go-flv/tag"
	_ "github.com/yutopp/go-rtmp"
	_ "github.com/yutopp/go-rtmp/message"
	_ "go.uber.org/goleak"
	_ "golang.org/x/image/draw"
	_ "golang.org/x/net/ipv4"
	_ "golang.org/x/net/ipv6"
	_ "google.golang.org/grpc"
	_ "google.golang.org/protobuf/proto"
)
