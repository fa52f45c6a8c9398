// Package relaytoml writes the cloud and edge pipelines of
// pipeline.example.toml as TOML text, on addresses a test or the bench picked.
package relaytoml

import (
	"fmt"
	"time"
)

// Relay is the example relay on chosen addresses. An unset optional field
// keeps pipeline.example.toml's value.
type Relay struct {
	RTMP string // rtmp-source
	RTX  string // quic-retransmit, and rtp-reorder's retransmit
	UDP  string // udp-sink's destination, udp-source's listen
	HTTP string // httpflv-sink

	CachePackets int           // quic-retransmit's cache_packets; 0: 5000
	Latency      time.Duration // rtp-reorder's latency; 0: 80ms

	// BeforeReorder and AfterReassembler are [[pipeline.stage]] tables, as
	// TOML text, put into the edge between udp-source and rtp-reorder (the
	// bench's netsim) and between flv-reassembler and httpflv-sink (a plugin).
	BeforeReorder, AfterReassembler string
}

// Cloud is the cloud pipeline: rtmp-source → flv-tagger → rtp-fragmenter →
// quic-retransmit → udp-sink.
func (r Relay) Cloud() string {
	cache := r.CachePackets
	if cache == 0 {
		cache = 5000
	}
	return fmt.Sprintf(`
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
`, r.RTMP, r.RTX, cache, r.UDP)
}

// Edge is the edge pipeline: udp-source → rtp-reorder → flv-reassembler →
// httpflv-sink, with the extra stages where Relay puts them.
func (r Relay) Edge() string {
	latency := r.Latency
	if latency == 0 {
		latency = 80 * time.Millisecond
	}
	return fmt.Sprintf(`
[[pipeline]]
name = "edge"

  [[pipeline.stage]]
  use = "udp-source"
  listen = %q
%s
  [[pipeline.stage]]
  use = "rtp-reorder"
  retransmit = %q
  latency = %q

  [[pipeline.stage]]
  use = "flv-reassembler"
%s
  [[pipeline.stage]]
  use = "httpflv-sink"
  listen = %q
`, r.UDP, r.BeforeReorder, r.RTX, latency.String(), r.AfterReassembler, r.HTTP)
}
