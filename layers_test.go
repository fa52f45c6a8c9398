package mediapipe

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/mediapipe/mediapipe"

// goList runs `go list -f '{{.ImportPath}} {{join .FIELD " "}}'` over
// patterns and returns FIELD (Deps: what a package links; Imports: what its
// non-test files import) by package.
func goList(t *testing.T, field string, patterns ...string) map[string][]string {
	t.Helper()
	args := append([]string{"list", "-f", `{{.ImportPath}} {{join .` + field + ` " "}}`}, patterns...)
	out, err := exec.Command("go", args...).Output()
	if err != nil {
		t.Fatalf("go list %s: %v", strings.Join(patterns, " "), err)
	}
	m := map[string][]string{}
	for line := range strings.Lines(string(out)) {
		if fields := strings.Fields(line); len(fields) > 0 {
			m[fields[0]] = fields[1:]
		}
	}
	return m
}

// TestLayers keeps the package map of docs/architecture.md true: what a
// stage or plugin author links stays small, and wire formats stay pure.
func TestLayers(t *testing.T) {
	hostOnly := []string{"github.com/knadh/koanf", "github.com/pelletier/go-toml", "github.com/prometheus/client_golang/prometheus/promhttp", module + "/host"}
	rules := []struct {
		patterns []string
		forbid   func(dep string) bool
		why      string
	}{
		{
			patterns: []string{"./core/...", "./plugins/...", "./internal/repair", "./internal/udpbatch"},
			forbid: func(dep string) bool {
				for _, h := range hostOnly {
					if strings.HasPrefix(dep, h) {
						return true
					}
				}
				return false
			},
			why: "the stage API, plugins and the machinery stages share must not link the config loader, the admin server or the host",
		},
		{
			patterns: []string{"./core/media/..."},
			forbid: func(dep string) bool {
				return strings.HasPrefix(dep, module+"/") && !strings.HasPrefix(dep, module+"/core/media/")
			},
			why: "wire formats are pure: they import nothing of mediapipe outside core/media",
		},
		{
			patterns: []string{"./core/media/repairwire", "./core/media/rtpheader", "./core/media/flv", "./core/media/h264", "./core/media/amf0", "./core/sr", "./internal/udpbatch"},
			forbid:   func(dep string) bool { return strings.HasPrefix(dep, module) },
			why:      "the repair protocol, the RTP header codec, FLV, H.264, AMF0, the SR interface and batched UDP import nothing of mediapipe",
		},
		{
			patterns: []string{"./core/media/repairwire"},
			forbid:   func(dep string) bool { return strings.HasPrefix(dep, "github.com/quic-go/") },
			why:      "the repair protocol's bytes need no QUIC library; internal/repair carries them over QUIC",
		},
		{
			patterns: []string{"./internal/repair"},
			forbid: func(dep string) bool {
				return strings.HasPrefix(dep, module+"/host") || strings.HasPrefix(dep, module+"/stages/")
			},
			why: "the repair machinery serves the two repair stages and knows neither them nor the host",
		},
		{
			patterns: []string{"./host"},
			forbid: func(dep string) bool {
				return strings.HasPrefix(dep, module+"/stages/") || strings.HasPrefix(dep, module+"/plugins/")
			},
			why: "the host reaches stages and plugins only through core.Registry",
		},
	}
	for _, r := range rules {
		for pkg, deps := range goList(t, "Deps", r.patterns...) {
			for _, dep := range deps {
				if r.forbid(dep) {
					t.Errorf("%s links %s: %s", pkg, dep, r.why)
				}
			}
		}
	}
	// A stage imports the stage API, wire formats and shared machinery,
	// never the host, plugins or another stage.
	for pkg, deps := range goList(t, "Imports", "./stages/...") {
		if strings.HasPrefix(pkg, module+"/stages/all") {
			continue
		}
		own := module + "/stages/" + strings.Split(strings.TrimPrefix(pkg, module+"/stages/"), "/")[0]
		for _, dep := range deps {
			shared := strings.HasPrefix(dep, module+"/stages/internal/")
			other := strings.HasPrefix(dep, module+"/stages/") && !shared && dep != own && !strings.HasPrefix(dep, own+"/")
			if other || strings.HasPrefix(dep, module+"/host") || strings.HasPrefix(dep, module+"/plugins/") {
				t.Errorf("stage package %s imports %s: a stage imports core, core/media and internal machinery only", pkg, dep)
			}
		}
	}
}
