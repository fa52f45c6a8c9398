package bench

import (
	"errors"
	"fmt"

	"github.com/mediapipe/mediapipe/internal/freeport"
	"github.com/mediapipe/mediapipe/internal/relaytoml"
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

// relayTOML is pipeline.example.toml with the bench's ports and settings,
// and netsim between udp-source and rtp-reorder on the edge when loss is
// asked for.
func relayTOML(p ports, cfg Config) string {
	r := relaytoml.Relay{RTMP: p.RTMP, RTX: p.RTX, UDP: p.UDP, HTTP: p.HTTP, CachePackets: cfg.CachePackets, Latency: cfg.ReorderLatency,
		// A bench publisher's end is its stream's end: viewers end at once
		// rather than after rtmp-source's reconnect_grace.
		ReconnectGrace: "0s"}
	if cfg.Loss > 0 {
		r.BeforeReorder = fmt.Sprintf(`
  [[pipeline.stage]]
  use = "netsim"
  drop = %g
  burst = %d
  seed = %d
`, cfg.Loss, cfg.Burst, cfg.Seed)
	}
	if cfg.Plugin != "" { // host.Load resolves a relative path against the config's dir
		r.AfterReassembler = fmt.Sprintf(`
  [[pipeline.stage]]
  plugin = %q
`, cfg.Plugin)
	}
	return "# mediapipe bench: cloud + edge on loopback (as pipeline.example.toml)" + r.Cloud() + r.Edge()
}

// streamName is stream i's key: live/s001, live/s002, …
func streamKey(i int) string { return fmt.Sprintf("s%03d", i+1) }
