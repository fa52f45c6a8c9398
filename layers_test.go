package mediapipe

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/mediapipe/mediapipe"

// listDeps returns, for each package matched by patterns, what it links
// (its transitive imports), as `go list -deps` sees them.
func listDeps(t *testing.T, patterns ...string) map[string][]string {
	t.Helper()
	args := append([]string{"list", "-f", `{{.ImportPath}} {{join .Deps " "}}`}, patterns...)
	out, err := exec.Command("go", args...).Output()
	if err != nil {
		t.Fatalf("go list %s: %v", strings.Join(patterns, " "), err)
	}
	deps := map[string][]string{}
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		if len(fields) > 0 {
			deps[fields[0]] = fields[1:]
		}
	}
	return deps
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
			patterns: []string{"./core", "./plugins/sdk", "./plugins/examples/..."},
			forbid: func(dep string) bool {
				for _, h := range hostOnly {
					if strings.HasPrefix(dep, h) {
						return true
					}
				}
				return false
			},
			why: "the stage API and plugins must not link the config loader, the admin server or the host",
		},
		{
			patterns: []string{"./core/media/..."},
			forbid: func(dep string) bool {
				return strings.HasPrefix(dep, module+"/") && !strings.HasPrefix(dep, module+"/core/media/")
			},
			why: "wire formats are pure: they import nothing of mediapipe outside core/media",
		},
		{
			patterns: []string{"./core/media/repairwire", "./core/media/rtpheader"},
			forbid:   func(dep string) bool { return strings.HasPrefix(dep, module) },
			why:      "the repair protocol and the RTP header codec import nothing of mediapipe",
		},
	}
	for _, r := range rules {
		for pkg, deps := range listDeps(t, r.patterns...) {
			for _, dep := range deps {
				if r.forbid(dep) {
					t.Errorf("%s links %s: %s", pkg, dep, r.why)
				}
			}
		}
	}
}
