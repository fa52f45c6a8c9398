// Package plugintest runs sr-enhancer with a real SR backend plugin (the
// sr-sharpen example) through the plugin bridge.
package plugintest

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/mediapipe/mediapipe/internal/testmedia"
	_ "github.com/mediapipe/mediapipe/plugins/bridge"
	_ "github.com/mediapipe/mediapipe/stages/srenhancer"
	"github.com/mediapipe/mediapipe/stages/srenhancer/internal/srtest"
)

var (
	binDir   string
	buildMu  sync.Mutex
	binaries = map[string]string{}
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sr-plugintest")
	if err != nil {
		panic(err)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// plugin builds the example plugin named name once per test binary.
func plugin(t *testing.T, name string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if bin, ok := binaries[name]; ok {
		return bin
	}
	bin := filepath.Join(binDir, name)
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/mediapipe/mediapipe/plugins/examples/"+name).CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", name, err, out)
	}
	binaries[name] = bin
	return bin
}

func TestSharpenPlugin(t *testing.T) {
	tags := testmedia.Tags(t, testmedia.Clip(t, testmedia.Options{}))
	bin := plugin(t, "sr-sharpen")
	r := srtest.Run(t, map[string]any{"backend": "plugin", "path": bin}, tags)
	srtest.CheckClean(t, r.File, 1280, 720)
	srtest.CheckStream(t, tags, r, 1280, 720)
	_, keys, _ := srtest.Kinds(tags)
	if got := r.Counter("backend_enhanced"); got != float64(keys) {
		t.Errorf("backend_enhanced = %v, want %d (failures %v)", got, keys, r.Drops("backend_failure"))
	}
}
