// Package relaytoml writes the cloud and edge pipelines of
// pipeline.example.toml as TOML text, on addresses a test or the bench picked.
package relaytoml

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Relay is the example relay on chosen addresses. An unset optional field
// is left out of the text, so the stage's default applies (which is what
// pipeline.example.toml spells out).
type Relay struct {
	RTMP string // rtmp-source
	RTX  string // quic-retransmit, and rtp-reorder's retransmit
	UDP  string // udp-sink's destination, udp-source's listen
	// Destinations, when set, are udp-sink's destinations instead of UDP
	// alone (a cloud feeding several edges).
	Destinations []string
	HTTP         string // httpflv-sink

	CachePackets int           // quic-retransmit's cache_packets; 0: its default
	TotalRate    int           // quic-retransmit's total_rate; 0: its default (none)
	Latency      time.Duration // rtp-reorder's latency; 0: its default

	// ReconnectGrace is rtmp-source's reconnect_grace as TOML text ("0s":
	// a publisher's end is its stream's end at once); empty: its default.
	ReconnectGrace string

	// ReorderID and ReassemblerID, when set, are the ids of the edge's
	// rtp-reorder and flv-reassembler, for branches (from = "ID") to tap.
	ReorderID, ReassemblerID string

	// BeforeReorder and AfterReassembler are [[pipeline.stage]] tables, as
	// TOML text, put into the edge between udp-source and rtp-reorder (the
	// bench's netsim) and between flv-reassembler and httpflv-sink (a plugin).
	BeforeReorder, AfterReassembler string

	// EdgeName names the edge pipeline ("" is "edge"): several edges in
	// one file need names of their own.
	EdgeName string
	// SourceParams are TOML lines added to the edge's udp-source table
	// (fec_payload_type for a fec-decoder after it).
	SourceParams string
	// BeforeSink is [[pipeline.stage]] tables put into the cloud between
	// quic-retransmit and udp-sink (fec-encoder).
	BeforeSink string
	// SinkParams are TOML lines added to the cloud's udp-sink table
	// (interface and multicast_loopback for a multicast group).
	SinkParams string
}

// Cloud is the cloud pipeline: rtmp-source → flv-tagger → rtp-fragmenter →
// quic-retransmit → udp-sink.
func (r Relay) Cloud() string {
	grace := ""
	if r.ReconnectGrace != "" {
		grace = fmt.Sprintf("\n  reconnect_grace = %q", r.ReconnectGrace)
	}
	cache := ""
	if r.CachePackets != 0 {
		cache = fmt.Sprintf("\n  cache_packets = %d", r.CachePackets)
	}
	if r.TotalRate != 0 {
		cache += fmt.Sprintf("\n  total_rate = %d", r.TotalRate)
	}
	dests := r.Destinations
	if len(dests) == 0 {
		dests = []string{r.UDP}
	}
	quoted := make([]string, len(dests))
	for i, d := range dests {
		quoted[i] = strconv.Quote(d)
	}
	return fmt.Sprintf(`
[[pipeline]]
name = "cloud"

  [[pipeline.stage]]
  use = "rtmp-source"
  listen = %q%s

  [[pipeline.stage]]
  use = "flv-tagger"

  [[pipeline.stage]]
  use = "rtp-fragmenter"

  [[pipeline.stage]]
  use = "quic-retransmit"
  listen = %q%s
%s
  [[pipeline.stage]]
  use = "udp-sink"
  destinations = [%s]
%s`, r.RTMP, grace, r.RTX, cache, r.BeforeSink, strings.Join(quoted, ", "), r.SinkParams)
}

// Edge is the edge pipeline: udp-source → rtp-reorder → flv-reassembler →
// httpflv-sink, with the extra stages where Relay puts them.
func (r Relay) Edge() string {
	latency := ""
	if r.Latency != 0 {
		latency = fmt.Sprintf("\n  latency = %q", r.Latency.String())
	}
	id := func(id string) string {
		if id == "" {
			return ""
		}
		return fmt.Sprintf("\n  id = %q", id)
	}
	name := r.EdgeName
	if name == "" {
		name = "edge"
	}
	return fmt.Sprintf(`
[[pipeline]]
name = %q

  [[pipeline.stage]]
  use = "udp-source"
  listen = %q
%s%s
  [[pipeline.stage]]
  use = "rtp-reorder"%s
  retransmit = %q%s

  [[pipeline.stage]]
  use = "flv-reassembler"%s
%s
  [[pipeline.stage]]
  use = "httpflv-sink"
  listen = %q
`, name, r.UDP, r.SourceParams, r.BeforeReorder, id(r.ReorderID), r.RTX, latency, id(r.ReassemblerID), r.AfterReassembler, r.HTTP)
}

// Direct is one pipeline named name: rtmp-source on rtmp → flv-tagger →
// sink (a stage name: httpflv-sink, hls-sink) on listen, sinkParams (TOML
// lines, "" for none) added to the sink's table, every other parameter its
// default. The shortest publish-to-viewer file, for tests of one sink.
func Direct(name, rtmp, sink, listen, sinkParams string) string {
	return fmt.Sprintf(`
[[pipeline]]
name = %q
  [[pipeline.stage]]
  use = "rtmp-source"
  listen = %q
  [[pipeline.stage]]
  use = "flv-tagger"
  [[pipeline.stage]]
  use = %q
  listen = %q
%s`, name, rtmp, sink, listen, sinkParams)
}
