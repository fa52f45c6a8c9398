package bridge

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/stagetest"
)

// TestDocsPluginBuildsAndRuns follows docs/plugins.md: the plugin's complete
// code in a folder and module of its own, a replace to this checkout, go
// build, then load and run it.
func TestDocsPluginBuildsAndRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module")
	}
	doc, err := os.ReadFile("../../docs/plugins.md")
	if err != nil {
		t.Fatal(err)
	}
	code := ""
	for _, block := range strings.Split(string(doc), "```go\n")[1:] {
		block, _, _ = strings.Cut(block, "```")
		if strings.Contains(block, "package main") {
			code = block
			break
		}
	}
	if code == "" {
		t.Fatal("docs/plugins.md has no complete plugin (a go block with package main)")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	goVersion := "1.26"
	if mod, err := os.ReadFile(filepath.Join(root, "go.mod")); err == nil {
		for _, line := range strings.Split(string(mod), "\n") {
			if v, ok := strings.CutPrefix(line, "go "); ok {
				goVersion = strings.TrimSpace(v)
			}
		}
	}
	dir := t.TempDir()
	files := map[string]string{
		"main.go": code,
		"go.mod": "module example.com/my-stage\n\ngo " + goVersion + "\n\n" +
			"require github.com/mediapipe/mediapipe v0.0.0\n\n" +
			"replace github.com/mediapipe/mediapipe => " + root + "\n",
	}
	// The checkout's go.sum already holds every checksum the plugin needs, so
	// go mod tidy never has to ask the checksum database (CI has no route to it).
	if sum, err := os.ReadFile(filepath.Join(root, "go.sum")); err == nil {
		files["go.sum"] = string(sum)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		// Everything the plugin needs is a dependency of mediapipe already; the
		// proxy may still be asked for go.mod files of pruned-away versions.
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("mod", "tidy")
	run("build", "-o", "my-stage", ".")

	def, err := load(t, filepath.Join(dir, "my-stage"))
	if err != nil {
		t.Fatal(err)
	}
	if def.Spec.Name != "timestamp-shift" || def.Spec.Param("offset") == nil {
		t.Fatalf("spec = %+v", def.Spec)
	}
	if errs := def.Check(map[string]any{"offset": "-1s"}); len(errs) != 1 || !strings.Contains(errs[0].Error(), "below the minimum") {
		t.Fatalf("Check(offset=-1s) = %v", errs)
	}
	env := core.TestEnv("./my-stage")
	st, err := def.Build(map[string]any{"offset": "500ms"}, env)
	if err != nil {
		t.Fatal(err)
	}
	h := stagetest.Start(t, st, env, false)
	s := h.StartStream("live/movie")
	h.SendData(s, flv.TypeVideo, 1000, flv.AppendTag(nil, flv.TypeVideo, 1000, []byte{0x17, 1, 0, 0, 0, 9}))
	h.EndStream(s)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	got := h.Out.WaitData(1, 5*time.Second)
	if len(got) != 1 {
		t.Fatalf("%d packets out", len(got))
	}
	want := flv.AppendTag(nil, flv.TypeVideo, 1500, []byte{0x17, 1, 0, 0, 0, 9})
	if got[0].Timestamp != 1500 || !bytes.Equal(got[0].Data, want) {
		t.Fatalf("out = ts %d %x, want ts 1500 %x", got[0].Timestamp, got[0].Data, want)
	}
}
