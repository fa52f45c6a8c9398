package mediapipe

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/mediapipe/mediapipe/core"
)

// TestStageMetricNamesHaveFamilies: every counter and gauge a stage names
// in the source has a documented family of its own (core/metricnames.go),
// so nothing lands in the catch-all mediapipe_stage_events_total or
// mediapipe_stage_gauge, which docs/metrics.md cannot describe.
func TestStageMetricNamesHaveFamilies(t *testing.T) {
	call := regexp.MustCompile(`\.(Counter|Gauge)\("([a-z0-9_]+)"\)`)
	seen := 0
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "deploy" || d.Name() == "_artifacts") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range call.FindAllStringSubmatch(string(src), -1) {
			seen++
			var fam string
			if m[1] == "Counter" {
				fam = core.StageCounterFamily("", m[2])
			} else {
				fam = core.StageGaugeFamily("", m[2])
			}
			if fam == "mediapipe_stage_events_total" || fam == "mediapipe_stage_gauge" {
				// A name one stage uses in its own sense is listed as "stage/name".
				if !hasStageSpecific(m[1], m[2]) {
					t.Errorf("%s: %s(%q) has no family in core/metricnames.go", path, m[1], m[2])
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen < 30 {
		t.Fatalf("found only %d metric names: the pattern no longer matches how stages name them", seen)
	}
}

func hasStageSpecific(kind, name string) bool {
	for _, stage := range []string{"hls-sink", "quic-retransmit", "httpflv-sink", "rtmp-source", "rtp-reorder", "udp-sink", "udp-source"} {
		var fam string
		if kind == "Counter" {
			fam = core.StageCounterFamily(stage, name)
		} else {
			fam = core.StageGaugeFamily(stage, name)
		}
		if fam != "mediapipe_stage_events_total" && fam != "mediapipe_stage_gauge" {
			return true
		}
	}
	return false
}
