package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// buildPlugin builds the example plugin name into dir and returns its path.
func buildPlugin(t *testing.T, dir, name string) string {
	t.Helper()
	// Look at the plugin's sources so go test's cache notices their changes
	// (the build runs in a child process).
	for _, root := range []string{"..", "../../core"} {
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(path, ".go") {
				_, _ = os.Stat(path)
			}
			return nil
		})
	}
	out := filepath.Join(dir, name)
	build := exec.Command("go", "build", "-o", out, "../examples/"+name)
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", name, err, b)
	}
	return out
}
