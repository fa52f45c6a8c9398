// Package control is the contract of mediapipe's transmission control loop
// (docs/control.md): once per interval the controller (run by fec-encoder)
// gathers what the cloud sends and what its edges report, hands it to a
// Policy, and applies the Policy's Decision: each stream's FEC overhead and
// pacing rate, and each edge's share of quic-retransmit's repair budget.
//
// Input and Decision are plain data with JSON tags: the plugin policy
// (policy = "plugin") receives and answers them as JSON, so a policy
// written in any language against docs/control.md can be dropped in.
package control

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/mediapipe/mediapipe/core"
)

// Stream is one stream as the cloud sends it, with its edges' latest reports.
type Stream struct {
	Stream string `json:"stream"` // APP/KEY
	SSRC   uint32 `json:"ssrc"`
	// What the cloud sent over the last interval (source packets only).
	MediaBytesPerSecond float64 `json:"media_bytes_per_second"`
	PacketsPerSecond    float64 `json:"packets_per_second"`
	MeanPacketBytes     float64 `json:"mean_packet_bytes"`
	// KeyframeBurstBytes is the largest burst of the stream's packets
	// sent back to back (a keyframe's fragments) over the last interval.
	KeyframeBurstBytes int `json:"keyframe_burst_bytes"`
	// The FEC geometry: Group source packets per group, a group waits at
	// most MaxWaitSeconds for its packets.
	Group          int     `json:"group"`
	MaxWaitSeconds float64 `json:"max_wait_seconds"`
	// MeanGroup is the mean number of source packets in the groups sent
	// over the last interval (fewer than Group where max_wait closed them;
	// 0: no parity was sent). Parity per group is ceil(Overhead × size).
	MeanGroup float64 `json:"mean_group,omitempty"`
	// MeanParityBytes is the mean size of a parity packet on the wire: as
	// long as its group's longest source packet plus the parity headers,
	// so with audio and video in one group parity costs more bytes than
	// MeanPacketBytes. Measured from the parity sent over the last
	// interval or, while none is sent, from the groups it would have
	// made; 0: not known (a policy then takes MeanPacketBytes).
	MeanParityBytes float64 `json:"mean_parity_bytes,omitempty"`
	// LatencyBudgetSeconds is how long an edge holds a gap for repair
	// (its rtp-reorder latency, as configured at the controller).
	LatencyBudgetSeconds float64 `json:"latency_budget_seconds"`
	// Edges holds the latest report of each edge receiving the stream.
	Edges []EdgeReport `json:"edges"`
	// Current is what is applied now.
	Current StreamDecision `json:"current"`
}

// EdgeReport is one edge's latest report on one stream.
type EdgeReport struct {
	Edge int `json:"edge"` // the edge's ID (core.Edge.ID)
	core.EdgeStream
	// RepairBytesPerSecond is what the cloud repaired to this edge (all
	// its streams) over the last interval.
	RepairBytesPerSecond float64 `json:"repair_bytes_per_second"`
}

// Input is everything a policy sees at one tick.
type Input struct {
	IntervalSeconds float64  `json:"interval_seconds"`
	Streams         []Stream `json:"streams"`
	// RepairBudget is quic-retransmit's total_rate in bytes/s to share
	// among edges; 0: no shared budget (RepairShares is ignored).
	RepairBudget int `json:"repair_budget"`
	// Edges lists the IDs of the edges connected now.
	Edges []int `json:"edges"`
}

// StreamDecision is what a policy sets for one stream.
type StreamDecision struct {
	// Overhead is parity packets per source packet (0 … 1; 0 sends none).
	Overhead float64 `json:"overhead"`
	// PaceBytesPerSecond is the rate udp-sink spreads a burst of the
	// stream's packets at; 0: no pacing (send as fast as they come).
	PaceBytesPerSecond float64 `json:"pace_bytes_per_second"`
}

// Decision is a policy's answer: per stream (by SSRC) and per edge (by ID).
type Decision struct {
	Streams map[uint32]StreamDecision `json:"streams"`
	// RepairShares gives each edge its fraction (0 … 1, summing to at most
	// 1) of Input.RepairBudget; an edge left out gets an equal share of
	// what the listed ones leave.
	RepairShares map[int]float64 `json:"repair_shares,omitempty"`
	// Reason says briefly why, for the log line written when a decision
	// changes.
	Reason string `json:"reason,omitempty"`
}

// Policy decides at each tick. Decide must return within ctx's deadline;
// on an error the controller keeps the current decision and counts it.
type Policy interface {
	Decide(ctx context.Context, in *Input) (Decision, error)
	Close() error
}

// Pacer is implemented by stages that can pace a stream's packets
// (udp-sink). The controller finds it among the pipeline's stages
// (core.Env.Siblings).
type Pacer interface {
	// SetPace sets stream's pacing rate in bytes/s from the next packet
	// on; 0 turns pacing off. Safe from any goroutine; a stream the stage
	// has not seen, or has seen end, is ignored.
	SetPace(stream *core.Stream, bytesPerSecond float64)
}

// RepairSharer is implemented by stages that repair for edges
// (quic-retransmit) and share a total repair rate among them.
type RepairSharer interface {
	// RepairBudget is the total bytes/s to share (0: none configured).
	RepairBudget() int
	// SetRepairRates sets each listed edge's repair rate in bytes/s;
	// edges not listed share what is left, each getting at least an equal
	// part of the budget (the listed rates are scaled down to make room,
	// and to fit the budget).
	SetRepairRates(rates map[int]int)
	// RepairedBytes is the bytes repaired so far to each connected edge.
	RepairedBytes() map[int]uint64
}

// PluginOpener starts a policy plugin at path. The plugin bridge installs
// one with SetPluginOpener; core does not depend on it.
type PluginOpener func(path string) (Policy, error)

var pluginOpener atomic.Pointer[PluginOpener]

// SetPluginOpener installs the opener used for policy = "plugin".
func SetPluginOpener(f PluginOpener) { pluginOpener.Store(&f) }

// ErrNoPlugins is returned by OpenPlugin when no bridge is linked in.
var ErrNoPlugins = errors.New("control: plugin policies are not available in this build")

// OpenPlugin starts the policy plugin at path through the installed opener.
func OpenPlugin(path string) (Policy, error) {
	f := pluginOpener.Load()
	if f == nil {
		return nil, ErrNoPlugins
	}
	return (*f)(path)
}

// Tick is one round of the loop: what the policy saw and what it decided.
type Tick struct {
	At       time.Time `json:"at"`
	Policy   string    `json:"policy"`
	Input    Input     `json:"input"`
	Decision Decision  `json:"decision"`
	Err      string    `json:"error,omitempty"` // the policy failed: Decision is the one kept
}

// Reporter is implemented by stages that run a controller (fec-encoder):
// the latest tick, for GET /api/control, mediapipe bench and tests.
type Reporter interface {
	LastTick() (Tick, bool)
}
