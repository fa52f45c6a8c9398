package core

import (
	"fmt"
	"slices"
	"strings"
)

// Family is one Prometheus metric family mediapipe exports: one meaning,
// its unit in the name (Prometheus' conventions), documented in
// docs/metrics.md (generated from Families).
type Family struct {
	Name   string
	Type   string   // counter or gauge
	Labels []string // every label, in order
	Help   string

	// Values are a stage counter's values of Labels (after the stage
	// labels): names that are one family's series, such as auth_admit
	// and auth_refuse as result="admit" and result="refuse".
	Values []string
}

// A stage counts with StageMetrics.Counter(name) and .Gauge(name); the name
// picks its family here. A name one stage uses in a sense of its own is
// looked up as "stage/name" first. Every family carries the stage labels
// (pipeline, position, stage).
var stageCounters = map[string]Family{
	"bytes_sent":               {Name: "mediapipe_stage_sent_bytes_total", Help: "Bytes written to viewers (HTTP-FLV: tags and chunk framing)."},
	"bytes_written":            {Name: "mediapipe_stage_written_bytes_total", Help: "Bytes written to recording files."},
	"datagrams_sent":           {Name: "mediapipe_stage_sent_datagrams_total", Help: "UDP datagrams sent (RTP media), each destination counted."},
	"rtcp_sent":                {Name: "mediapipe_stage_sent_rtcp_packets_total", Help: "RTCP packets sent (SR+SDES announcements, BYE)."},
	"pace_held":                {Name: "mediapipe_stage_paced_packets_total", Help: "Packets udp-sink held back to pace their stream's burst."},
	"pace_overrun":             {Name: "mediapipe_stage_pace_overrun_packets_total", Help: "Packets udp-sink sent ahead of their stream's pace because the stream held too much (its pace is below its rate)."},
	"keyframes":                {Name: "mediapipe_stage_keyframes_total", Help: "Video keyframes passed to viewers."},
	"viewers_kicked":           {Name: "mediapipe_stage_viewers_kicked_total", Help: "Viewers disconnected through the control API (DELETE /api/viewers/ID)."},
	"viewers_served":           {Name: "mediapipe_stage_viewers_served_total", Help: "Viewer responses started."},
	"streams_published":        {Name: "mediapipe_stage_streams_started_total", Help: "Streams started (published, or first seen on an edge)."},
	"streams_started":          {Name: "mediapipe_stage_streams_started_total", Help: "Streams started (published, or first seen on an edge)."},
	"streams_ended":            {Name: "mediapipe_stage_streams_ended_total", Help: "Streams ended."},
	"streams_continued":        {Name: "mediapipe_stage_streams_continued_total", Help: "Live streams a new sender (a new SSRC: a restarted or standby cloud) took over and continued."},
	"reconnects_continued":     {Name: "mediapipe_stage_reconnects_continued_total", Help: "Streams a returning publisher continued within reconnect_grace."},
	"reconnect_grace_expired":  {Name: "mediapipe_stage_reconnect_grace_expired_total", Help: "Streams ended because no publisher came back within reconnect_grace."},
	"recordings":               {Name: "mediapipe_stage_recordings_total", Help: "Recording files started."},
	"repaired":                 {Name: "mediapipe_stage_repaired_packets_total", Help: "Lost packets recovered from the cloud's cache in time."},
	"repaired_after_latency":   {Name: "mediapipe_stage_repaired_late_packets_total", Help: "Repairs that arrived after their gap was skipped."},
	"nacks_sent":               {Name: "mediapipe_stage_nacks_sent_total", Help: "Repair requests (NACKed sequence numbers) sent to the cloud."},
	"nacks_unknown_ssrc":       {Name: "mediapipe_stage_nacks_unknown_ssrc_total", Help: "Gaps not asked for because the cloud does not know the stream's SSRC."},
	"repair_refused":           {Name: "mediapipe_stage_repair_refused_total", Help: "Repair requests the cloud refused (rate or peer limits)."},
	"repair_unavailable":       {Name: "mediapipe_stage_repair_unavailable_total", Help: "Gaps not asked for because the repair connection was down."},
	"reports_sent":             {Name: "mediapipe_stage_reports_sent_total", Help: "Receiver reports (one stream each) an edge sent to its cloud over the repair connection."},
	"reports_unsent":           {Name: "mediapipe_stage_reports_unsent_total", Help: "Receiver reports an edge could not send (the stream's send window full, or an error); the next one, a second later, supersedes them."},
	"reports_received":         {Name: "mediapipe_stage_reports_received_total", Help: "Edges' receiver reports the repair server kept (one stream each)."},
	"init_fetched":             {Name: "mediapipe_stage_init_fetched_total", Help: "Streams joined late whose init tags were fetched from the cloud."},
	"gone":                     {Name: "mediapipe_stage_repair_gone_packets_total", Help: "Packets asked for that had left the cloud's cache."},
	"repaired_sent":            {Name: "mediapipe_stage_repair_sent_packets_total", Help: "Packets the repair server sent to edges."},
	"quic-retransmit/requests": {Name: "mediapipe_stage_repair_requests_total", Help: "Packets the edges asked the repair server for."},
	"idle_streams_closed":      {Name: "mediapipe_stage_idle_streams_closed_total", Help: "Repair streams closed for idleness."},
	"not_rtp_uncached":         {Name: "mediapipe_stage_uncached_packets_total", Help: "Packets passed on without caching (not RTP)."},
	"hls-sink/requests":        {Name: "mediapipe_stage_http_requests_total", Help: "HTTP requests answered (playlists, segments, parts)."},
	"mux_warnings":             {Name: "mediapipe_stage_mux_warnings_total", Help: "Warnings from the HLS muxer (a tag it could not place)."},
	"muxer_restarts":           {Name: "mediapipe_stage_muxer_restarts_total", Help: "HLS muxers restarted (codec parameters changed)."},
	"restarts":                 {Name: "mediapipe_plugin_restarts_total", Help: "Plugin or isolated stage processes restarted after dying."},
	"backend_restarts":         {Name: "mediapipe_sr_backend_restarts_total", Help: "SR backend plugin processes restarted after dying."},
	"backend_enhanced":         {Name: "mediapipe_sr_enhanced_keyframes_total", Help: "Keyframes the SR backend super-resolved in time."},
	"backend_skipped":          {Name: "mediapipe_sr_skipped_keyframes_total", Help: "Keyframes upscaled conventionally (backend down, late or failed)."},
	"ffmpeg_start":             {Name: "mediapipe_sr_ffmpeg_starts_total", Help: "ffmpeg processes started by sr-enhancer."},
	"auth_admit":               {Name: "mediapipe_stage_auth_decisions_total", Labels: []string{"result"}, Values: []string{"admit"}, Help: authHelp},
	"auth_refuse":              {Name: "mediapipe_stage_auth_decisions_total", Labels: []string{"result"}, Values: []string{"refuse"}, Help: authHelp},
	"auth_error_refused":       {Name: "mediapipe_stage_auth_decisions_total", Labels: []string{"result"}, Values: []string{"error_refused"}, Help: authHelp},
	"auth_error_admitted":      {Name: "mediapipe_stage_auth_decisions_total", Labels: []string{"result"}, Values: []string{"error_admitted"}, Help: authHelp},
	"auth_calls":               {Name: "mediapipe_stage_auth_calls_total", Help: "Calls made to auth_url (one answers every client asking the same question meanwhile)."},
	"auth_cached":              {Name: "mediapipe_stage_auth_cached_total", Help: "Auth decisions answered from a kept answer, without a call."},
	"fec_parity_sent":          {Name: "mediapipe_stage_fec_parity_sent_packets_total", Help: "Parity packets fec-encoder sent."},
	"fec_recovered":            {Name: "mediapipe_stage_fec_recovered_packets_total", Help: "Lost source packets fec-decoder recovered from parity."},
	"fec_rebuilt":              {Name: "mediapipe_stage_fec_rebuilt_packets_total", Help: "Packets fec-decoder rebuilt that rtp-reorder took in place of lost ones; its reports count them as lost (the loss before FEC and repair)."},
	"control_decisions":        {Name: "mediapipe_stage_control_decisions_total", Help: "Decisions of fec-encoder's transmission controller that changed what is applied (overhead, pacing or repair rates); each is logged with its reason."},
	"control_policy_errors":    {Name: "mediapipe_stage_control_policy_errors_total", Help: "Controller rounds whose policy failed or did not answer within its deadline; the decision applied before stays."},
	"duplicated":               {Name: "mediapipe_netsim_duplicated_packets_total", Help: "Packets netsim duplicated."},
	"reordered":                {Name: "mediapipe_netsim_reordered_packets_total", Help: "Packets netsim delayed out of order."},
}

const authHelp = "Publishers and viewers admitted or refused by auth_url, by result: admit, refuse (the hook said no), error_refused and error_admitted (the call failed or timed out; auth_fail_open decides)."

var stageGauges = map[string]Family{
	"streams":          {Name: "mediapipe_stage_streams", Help: "Streams open in the stage."},
	"viewers":          {Name: "mediapipe_stage_viewers", Help: "Viewers connected."},
	"peers":            {Name: "mediapipe_stage_repair_peers", Help: "Edges connected to the repair server."},
	"cache_bytes":      {Name: "mediapipe_stage_cache_bytes", Help: "Bytes held in the repair cache."},
	"cached_streams":   {Name: "mediapipe_stage_cached_streams", Help: "Streams held in the repair cache."},
	"held_packets":     {Name: "mediapipe_stage_held_packets", Help: "Packets held for streams not yet started."},
	"gap_wait_seconds": {Name: "mediapipe_stage_gap_wait_seconds", Help: "How long a gap currently waits for repair before it is skipped."},
	"repair_connected": {Name: "mediapipe_stage_repair_connected", Help: "Repair connections to the clouds up (1 while the one connection is up, with one retransmit address)."},
	"rtt_seconds":      {Name: "mediapipe_stage_repair_rtt_seconds", Help: "Round-trip time to the repair server."},
	"delay_queue":      {Name: "mediapipe_netsim_delay_queue_packets", Help: "Packets netsim holds back."},
}

// The families every stage has, and those of the process.
var (
	famPacketsIn  = Family{Name: "mediapipe_stage_packets_in_total", Type: "counter", Help: "Packets queued to the stage."}
	famPacketsOut = Family{Name: "mediapipe_stage_packets_out_total", Type: "counter", Help: "Packets the stage emitted."}
	famDrops      = Family{Name: "mediapipe_stage_drops_total", Type: "counter", Labels: []string{"reason"}, Help: "Packets or units dropped, or requests refused, by the stage, by reason."}
	famEvents     = Family{Name: "mediapipe_stage_events_total", Type: "counter", Labels: []string{"event"}, Help: "Counters a stage names that no other family describes (none of the built-in stages'; a test keeps it so)."}
	famGauge      = Family{Name: "mediapipe_stage_gauge", Type: "gauge", Labels: []string{"name"}, Help: "Gauges a stage names that no other family describes (none of the built-in stages')."}
	famReloads    = Family{Name: "mediapipe_config_reloads_total", Type: "counter", Labels: []string{"result"}, Help: "Reloads of the pipeline file, by result: ok, refused (the file has problems; nothing changed), failed (applied, but a pipeline could not start)."}
	famReloadOK   = Family{Name: "mediapipe_config_last_reload_successful", Type: "gauge", Help: "1 when the last reload was applied whole (or none was tried), else 0."}
)

// extraFamilies are families registered outside core (the host's, the
// stages' own), listed for docs/metrics.md through RegisterFamily.
var extraFamilies []Family

// RegisterFamily lists f in Families, for a family a package registers
// with the Prometheus registry itself. Call it from an init function.
func RegisterFamily(f Family) { extraFamilies = append(extraFamilies, f) }

// stageFamily returns the family of a stage's counter or gauge named name,
// and whether the name is known.
func stageFamily(table map[string]Family, stage, name string) (Family, bool) {
	if f, ok := table[stage+"/"+name]; ok {
		return f, true
	}
	f, ok := table[name]
	return f, ok
}

// Families lists every family mediapipe exports (beside the Go runtime's
// go_* and the process's process_*), sorted by name, each once.
func Families() []Family {
	seen := map[string]bool{}
	var out []Family
	add := func(f Family, typ string, staged bool) {
		if seen[f.Name] {
			return
		}
		seen[f.Name] = true
		if typ != "" {
			f.Type = typ
		}
		if staged {
			f.Labels = append(slices.Clone(stageLabels), f.Labels...)
		}
		f.Values = nil
		out = append(out, f)
	}
	for _, f := range []Family{famPacketsIn, famPacketsOut, famDrops, famEvents, famGauge} {
		add(f, "", true)
	}
	for _, f := range stageCounters {
		add(f, "counter", true)
	}
	for _, f := range stageGauges {
		add(f, "gauge", true)
	}
	for _, f := range append([]Family{famReloads, famReloadOK}, extraFamilies...) {
		add(f, "", false)
	}
	slices.SortFunc(out, func(a, b Family) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// FamiliesMarkdown is docs/metrics.md.
func FamiliesMarkdown() string {
	var b strings.Builder
	b.WriteString(`# Metrics

Generated by ` + "`mediapipe metrics --markdown`" + ` from the code; a test keeps it current.
Every family is on the ` + "`[admin]`" + ` address at ` + "`/metrics`" + `, beside the Go
runtime's ` + "`go_*`" + ` and the process's ` + "`process_*`" + ` (CPU, RSS, open descriptors).
Stage families carry ` + "`pipeline`" + `, ` + "`position`" + ` (1-based, in the pipeline) and
` + "`stage`" + ` (its name); a reload that removes a pipeline removes its series.

| family | type | labels | meaning |
|---|---|---|---|
`)
	for _, f := range Families() {
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", f.Name, f.Type, strings.Join(f.Labels, ", "), f.Help)
	}
	return b.String()
}

// StageCounterFamily is the family a stage's counter named name counts in
// (mediapipe_stage_events_total for a name no family describes): for
// tests and tools that read /metrics by the names stages use.
func StageCounterFamily(stage, name string) string {
	if f, ok := stageFamily(stageCounters, stage, name); ok {
		return f.Name
	}
	return famEvents.Name
}

// StageGaugeFamily is StageCounterFamily for gauges.
func StageGaugeFamily(stage, name string) string {
	if f, ok := stageFamily(stageGauges, stage, name); ok {
		return f.Name
	}
	return famGauge.Name
}
