package bench

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
)

// Gaps accounts for the gaps rtp-reorder skipped: every skipped packet must
// have been lost somewhere a counter saw (netsim, a queue between the
// fragmenter and the reorder buffer, the edge socket's kernel drops) and then
// not repaired. What no counter explains is a lost packet nobody knows about,
// and fails the run.
type Gaps struct {
	Skipped     float64            `json:"skipped"`
	Explained   float64            `json:"explained"`            // sum of Causes
	Unexplained float64            `json:"unexplained"`          // Skipped − Explained when positive
	Causes      map[string]float64 `json:"causes,omitempty"`     // counter → count, non-zero only
	NacksSent   *float64           `json:"nacks_sent,omitempty"` // rtp-reorder's NACKed packets
	Gone        *float64           `json:"gone,omitempty"`       // packets the cloud answered GONE
	RepairUp    *float64           `json:"repair_connected"`     // rtp-reorder's repair_connected gauge at the end
	// RepairDownSeconds is how many of the run's seconds found the repair
	// connection down (sampled once a second): gaps then are skipped unasked.
	RepairDownSeconds int `json:"repair_down_seconds"`
	// RTT is the repair connection's round trip at the end, in ms: a gap
	// waits the reorder latency for its repair, and repairs slower than
	// that come late.
	RTT *float64 `json:"repair_rtt_ms,omitempty"`

	// Skipped gaps whose last NACK was refused by the cloud's rate limit,
	// or not sent (not connected, busy); repairs that came past latency
	// within a wait lengthened by a slow round trip.
	Refused      *float64 `json:"repair_refused,omitempty"`
	Unavailable  *float64 `json:"repair_unavailable,omitempty"`
	RepairedLate *float64 `json:"repaired_after_latency,omitempty"`
}

// gapCauses are the drop counters that take a packet out of the stream
// after rtp-fragmenter gave it a sequence number and before rtp-reorder
// saw it: pipeline, stage, reason ("" any).
var gapCauses = []struct{ pipeline, stage, reason string }{
	{"cloud", "quic-retransmit", ""}, // not cached, not sent: answered GONE
	{"cloud", "udp-sink", ""},
	{"edge", "udp-source", ""},
	{"edge", "netsim", ""},
	{"edge", "rtp-reorder", "queue_full"},        // the stage's input queue
	{"edge", "rtp-reorder", "repair_queue_full"}, // a repair that came back and was dropped
	{"edge", "rtp-reorder", "overflow"},
	{"edge", "rtp-reorder", "late"}, // came (or was repaired) after its gap was skipped
}

// explainGaps fills Gaps from the relay's final metrics and the kernel's
// drop count of the edge's UDP socket (kernelDrops, -1 unknown).
func explainGaps(m metricsView, kernelDrops int64) Gaps {
	g := Gaps{Causes: map[string]float64{}}
	g.Skipped, _ = m.firstOf("mediapipe_stage_drops_total", "edge", "rtp-reorder", "reason", skipReasons...)
	for _, c := range gapCauses {
		match := map[string]string{"pipeline": c.pipeline, "stage": c.stage}
		if c.reason != "" {
			match["reason"] = c.reason
		}
		if x, _ := m.sum("mediapipe_stage_drops_total", match); x > 0 {
			k := c.pipeline + "/" + c.stage
			if c.reason != "" {
				k += " " + c.reason
			}
			g.Causes[k] += x
			g.Explained += x
		}
	}
	if kernelDrops > 0 {
		g.Causes["kernel: edge UDP socket receive buffer"] = float64(kernelDrops)
		g.Explained += float64(kernelDrops)
	}
	if x, ok := m.gauge("edge", "rtp-reorder", "rtt_seconds"); ok {
		x = round(x*1000, 1)
		g.RTT = &x
	}
	if g.Skipped > g.Explained {
		g.Unexplained = g.Skipped - g.Explained
	}
	for _, f := range []struct {
		dst  **float64
		name string
	}{
		{&g.NacksSent, "nacks_sent"},
		{&g.Gone, "gone"},
		{&g.Refused, "repair_refused"},
		{&g.Unavailable, "repair_unavailable"},
		{&g.RepairedLate, "repaired_after_latency"},
	} {
		if x, ok := m.counter("edge", "rtp-reorder", f.name); ok {
			*f.dst = &x
		}
	}
	if x, ok := m.gauge("edge", "rtp-reorder", "repair_connected"); ok {
		g.RepairUp = &x
	}
	return g
}

// udpDrops sums the kernel's drop counter (the last column of /proc/net/udp
// and udp6: datagrams refused because the socket's receive buffer was full)
// over the sockets bound to addr's port; -1 when it cannot be read (not
// Linux, or no such socket). The socket must still be open: the counter
// goes with it.
func udpDrops(addr string) int64 {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return -1
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return -1
	}
	total, found := int64(0), false
	for _, name := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		f, err := os.Open(name)
		if err != nil {
			continue
		}
		n, ok := parseUDPDrops(f, uint16(port))
		f.Close()
		if ok {
			total, found = total+n, true
		}
	}
	if !found {
		return -1
	}
	return total
}

// parseUDPDrops reads a /proc/net/udp table and sums the drops column of
// the rows whose local port is port.
func parseUDPDrops(r io.Reader, port uint16) (int64, bool) {
	sc := bufio.NewScanner(r)
	want := fmt.Sprintf(":%04X", port)
	var total int64
	found := false
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		// sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
		if len(f) < 13 || !strings.HasSuffix(f[1], want) {
			continue
		}
		n, err := strconv.ParseInt(f[len(f)-1], 10, 64)
		if err != nil {
			continue
		}
		total += n
		found = true
	}
	return total, found
}
