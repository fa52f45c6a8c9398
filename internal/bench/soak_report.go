package bench

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// soakLoss is netsim's drop share in a soak when --loss is not given: the
// link loses packets, so repair runs all along.
const soakLoss = 0.02

// soakMain runs a soak and prints its report; the exit code is 1 when the
// soak failed.
func soakMain(ctx context.Context, cfg Config, command string, asJSON bool, stdout, stderr io.Writer) int {
	rep, err := RunSoak(ctx, cfg, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "mediapipe bench:", err)
		return 1
	}
	rep.Command = command
	if !printReport(stdout, stderr, asJSON, rep, rep.writeMarkdown) {
		return 1
	}
	if len(rep.Failed) > 0 {
		fmt.Fprintf(stderr, "mediapipe bench: SOAK FAILED: %s\n", strings.Join(rep.Failed, "; "))
		return 1
	}
	return 0
}

// writeMarkdown prints the report as Markdown tables, to be quoted as is.
func (r *SoakReport) writeMarkdown(w io.Writer) {
	fmt.Fprintf(w, "Soak: `%s` — %s, a sample every %s (%d samples)\n\n", r.Command, r.Duration, r.Every, r.Samples)
	fmt.Fprintln(w, "| figure | start | peak | end | trend (rise over 2nd half) | limit | verdict |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---|")
	for _, f := range r.Figures {
		name := f.Name
		if f.Unit != "" {
			name += " (" + f.Unit + ")"
		}
		fmt.Fprintf(w, "| %s | %.0f | %.0f | %.0f | %+.1f | %.1f | %s |\n", name, f.Start, f.Peak, f.End, f.Rise, f.Limit, f.verdict())
	}
	l := r.Load
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| load | count |")
	fmt.Fprintln(w, "|---|---:|")
	rows := []struct {
		k string
		v any
	}{
		{"stream slots", l.Streams},
		{"publisher sessions (errors)", fmt.Sprintf("%d (%d)", l.Publishes, l.PublishErrors)},
		{"viewer sessions", l.ViewerSessions},
		{"netsim loss", fmt.Sprintf("%g", l.Loss)},
		{"tags matched", l.Matched},
		{"tags corrupt / never published", fmt.Sprintf("%d / %d", l.Corrupt, l.Unknown)},
		{"plugin kills / restarts", fmt.Sprintf("%d / %d", l.PluginKills, l.PluginRestarts)},
	}
	for _, k := range slices.Sorted(maps.Keys(l.Junk)) {
		rows = append(rows, struct {
			k string
			v any
		}{"junk to " + k, l.Junk[k]})
	}
	for _, row := range rows {
		fmt.Fprintf(w, "| %s | %v |\n", row.k, row.v)
	}
	if len(l.Drops) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| drop (pipeline/stage reason) | count |")
		fmt.Fprintln(w, "|---|---:|")
		for _, k := range slices.Sorted(maps.Keys(l.Drops)) {
			fmt.Fprintf(w, "| %s | %.0f |\n", k, l.Drops[k])
		}
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "\nERROR: %s\n", e)
	}
	if len(r.Failed) == 0 {
		fmt.Fprintln(w, "\nverdict: PASS — no figure grows, every tag intact")
	} else {
		fmt.Fprintf(w, "\nverdict: FAIL — %s\n", strings.Join(r.Failed, "; "))
	}
}
