package bench

import (
	"errors"
	"fmt"
	"strings"

	"github.com/mediapipe/mediapipe/internal/freeport"
)

// ports are the relay's loopback listeners, each on a free port.
type ports struct {
	RTMP, RTX, UDP, HTTP string
}

// freePorts picks the relay's ports by binding :0 and letting go; the
// pipeline binds them again a moment later (a small race, fine on loopback).
func freePorts() (ports, error) {
	var p ports
	var err error
	if p.RTMP, err = freeport.TCP(); err != nil {
		return p, err
	}
	if p.HTTP, err = freeport.TCP(); err != nil {
		return p, err
	}
	if p.RTX, err = freeport.UDP(); err != nil {
		return p, err
	}
	if p.UDP, err = freeport.UDP(); err != nil {
		return p, err
	}
	if p.RTMP == p.HTTP || p.RTX == p.UDP {
		return p, errors.New("picking free ports: the system handed out one port twice")
	}
	return p, nil
}

// relayTOML is pipeline.example.toml with the bench's ports, and netsim
// between udp-source and rtp-reorder on the edge when loss is asked for.
func relayTOML(p ports, cfg Config) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# mediapipe bench: cloud + edge on loopback (as pipeline.example.toml)
[[pipeline]]
name = "cloud"

  [[pipeline.stage]]
  use = "rtmp-source"
  listen = %q

  [[pipeline.stage]]
  use = "flv-tagger"

  [[pipeline.stage]]
  use = "rtp-fragmenter"
  max_payload = 1180
  payload_type = 100

  [[pipeline.stage]]
  use = "quic-retransmit"
  listen = %q
  cache_packets = %d

  [[pipeline.stage]]
  use = "udp-sink"
  destinations = [%q]

[[pipeline]]
name = "edge"

  [[pipeline.stage]]
  use = "udp-source"
  listen = %q
`, p.RTMP, p.RTX, cfg.CachePackets, p.UDP, p.UDP)
	if cfg.Loss > 0 {
		fmt.Fprintf(&b, `
  [[pipeline.stage]]
  use = "netsim"
  drop = %g
  burst = %d
  seed = %d
`, cfg.Loss, cfg.Burst, cfg.Seed)
	}
	fmt.Fprintf(&b, `
  [[pipeline.stage]]
  use = "rtp-reorder"
  retransmit = %q
  latency = %q

  [[pipeline.stage]]
  use = "flv-reassembler"

  [[pipeline.stage]]
  use = "httpflv-sink"
  listen = %q
`, p.RTX, cfg.ReorderLatency.String(), p.HTTP)
	return b.String()
}

// streamName is stream i's key: live/s001, live/s002, …
func streamKey(i int) string { return fmt.Sprintf("s%03d", i+1) }
