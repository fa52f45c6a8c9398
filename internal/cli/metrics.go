package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/mediapipe/mediapipe/core"
)

// metrics lists the Prometheus families a running mediapipe exports, so an
// operator can write queries and dashboards without a running process.
func init() {
	Extra["metrics"] = Command{Summary: "list the Prometheus metric families (--markdown for docs)", Run: metricsCmd}
	descriptions["metrics"] = `Lists every metric family mediapipe serves at /metrics on the [admin]
address: name, type, labels and meaning. --markdown prints docs/metrics.md.`
}

func metricsCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("metrics", "metrics [--markdown]", stderr)
	md := fs.Bool("markdown", false, "print the Markdown reference (docs/metrics.md)")
	if err := fs.Parse(args); err != nil {
		return FlagExit(err)
	}
	if *md {
		fmt.Fprint(stdout, core.FamiliesMarkdown())
		return 0
	}
	for _, f := range core.Families() {
		fmt.Fprintf(stdout, "%-48s %-7s {%s}\n    %s\n", f.Name, f.Type, strings.Join(f.Labels, ","), f.Help)
	}
	return 0
}
