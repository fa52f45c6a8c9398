// Package plugintest runs sr-enhancer with a real SR backend plugin (the
// sr-sharpen example) through the plugin bridge.
package plugintest

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/mediapipe/mediapipe/internal/testmedia"
	_ "github.com/mediapipe/mediapipe/plugins/bridge"
	_ "github.com/mediapipe/mediapipe/stages/srenhancer"
	"github.com/mediapipe/mediapipe/stages/srenhancer/internal/srtest"
)

func TestSharpenPlugin(t *testing.T) {
	tags := testmedia.Tags(t, testmedia.Clip(t, testmedia.Options{}))
	bin := filepath.Join(t.TempDir(), "sr-sharpen")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/mediapipe/mediapipe/plugins/examples/sr-sharpen").CombinedOutput(); err != nil {
		t.Fatalf("building the plugin: %v\n%s", err, out)
	}
	r := srtest.Run(t, map[string]any{"backend": "plugin", "path": bin}, tags)
	srtest.CheckClean(t, r.File, 1280, 720)
	srtest.CheckStream(t, tags, r, 1280, 720)
	_, keys, _ := srtest.Kinds(tags)
	if got := r.Counter("backend_enhanced"); got != float64(keys) {
		t.Errorf("backend_enhanced = %v, want %d (failures %v)", got, keys, r.Drops("backend_failure"))
	}
}
