package bridge

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/sr"
	"github.com/mediapipe/mediapipe/core/stagetest"
)

// docPrograms returns the complete programs (go blocks with package main)
// of a doc, in order.
func docPrograms(t *testing.T, doc string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("../../docs", doc))
	if err != nil {
		t.Fatal(err)
	}
	var code []string
	for _, block := range strings.Split(string(b), "```go\n")[1:] {
		block, _, _ = strings.Cut(block, "```")
		if strings.Contains(block, "package main") {
			code = append(code, block)
		}
	}
	if len(code) == 0 {
		t.Fatalf("docs/%s has no complete program (a go block with package main)", doc)
	}
	return code
}

// buildDoc builds code as the docs say: in a folder and module of its own,
// a replace to this checkout, go mod tidy, go build. It returns the program.
func buildDoc(t *testing.T, code, name string) string {
	t.Helper()
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
		"go.mod": "module example.com/" + name + "\n\ngo " + goVersion + "\n\n" +
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
	run("build", "-o", name, ".")
	return filepath.Join(dir, name)
}

// TestDocsPluginBuildsAndRuns follows docs/plugins.md: the plugin's complete
// code in a folder and module of its own, a replace to this checkout, go
// build, then load and run it.
func TestDocsPluginBuildsAndRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module")
	}
	def, err := load(t, buildDoc(t, docPrograms(t, "plugins.md")[0], "my-stage"))
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

// TestDocsRenamePluginRuns: the renaming plugin of docs/plugins.md builds,
// takes its table parameter and serves live/cam1 as public/lobby, data and
// init tags included, while other streams pass as they were.
func TestDocsRenamePluginRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module")
	}
	var code string
	for _, c := range docPrograms(t, "plugins.md") {
		if strings.Contains(c, "sdk.Rename") {
			code = c
		}
	}
	if code == "" {
		t.Fatal("docs/plugins.md has no renaming plugin")
	}
	def, err := load(t, buildDoc(t, code, "my-rename"))
	if err != nil {
		t.Fatal(err)
	}
	if errs := def.Check(map[string]any{"rename": []any{"a"}}); len(errs) != 1 || !strings.Contains(errs[0].Error(), `["a"] is not a table`) {
		t.Fatalf("Check(rename = [\"a\"]) = %v", errs)
	}
	env := core.TestEnv("my-rename")
	st, err := def.Build(map[string]any{"rename": map[string]any{"live/cam1": "public/lobby"}}, env)
	if err != nil {
		t.Fatal(err)
	}
	h := stagetest.Start(t, st, env, false)
	cam, other := h.StartStream("live/cam1"), h.StartStream("live/other")
	init := &core.InitTags{Video: flv.AppendTag(nil, flv.TypeVideo, 0, []byte{0x17, 0, 0, 0, 0, 1})}
	cam.SetInit(init)
	h.SendData(cam, flv.TypeVideo, 40, flv.AppendTag(nil, flv.TypeVideo, 40, []byte{0x27, 1, 0, 0, 0, 2}))
	h.SendData(other, flv.TypeVideo, 40, flv.AppendTag(nil, flv.TypeVideo, 40, []byte{0x27, 1, 0, 0, 0, 3}))
	got := h.Out.WaitData(2, 5*time.Second)
	h.EndStream(cam)
	h.EndStream(other)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	names := map[string]*core.Stream{}
	for _, p := range got {
		names[p.Stream.Name] = p.Stream
	}
	lobby := names["public/lobby"]
	if len(got) != 2 || lobby == nil || names["live/other"] == nil {
		t.Fatalf("data went to %v, want public/lobby and live/other", names)
	}
	if i := lobby.Init(); i == nil || !bytes.Equal(i.Video, init.Video) {
		t.Errorf("public/lobby's init tags = %+v, want live/cam1's", i)
	}
}

// TestDocsSRBackendBuildsAndRuns: the SR backend of docs/sr.md is a complete
// program: it builds (its imports are all there) and upscales.
func TestDocsSRBackendBuildsAndRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module")
	}
	path := buildDoc(t, docPrograms(t, "sr.md")[0], "my-sr")
	b, err := OpenSRBackend(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	in := &sr.Image{Width: 4, Height: 2, Format: "rgb24", Pix: make([]byte, 4*2*3)}
	for i := range in.Pix {
		in.Pix[i] = byte(i)
	}
	out, err := b.Enhance(context.Background(), in, 2)
	if err != nil {
		t.Fatal(err)
	}
	if out.Width != 8 || out.Height != 4 || len(out.Pix) != 8*4*3 || !bytes.Equal(out.Pix[:3], in.Pix[:3]) {
		t.Fatalf("out = %dx%d %d bytes", out.Width, out.Height, len(out.Pix))
	}
}

// TestDocsPolicyPluginBuildsAndRuns: the policy plugin of docs/plugins.md is
// a complete program: it builds and decides as the page says (10 % parity
// where an edge loses over 1 %, pacing kept), through the bridge.
func TestDocsPolicyPluginBuildsAndRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module")
	}
	var code string
	for _, c := range docPrograms(t, "plugins.md") {
		if strings.Contains(c, "sdk.ServePolicy") {
			code = c
		}
	}
	if code == "" {
		t.Fatal("docs/plugins.md has no policy plugin")
	}
	p, err := OpenPolicy(buildDoc(t, code, "my-policy"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	in := policyInput("live/x") // stream 0x1234 has an edge at 8 %, 0x5678 none
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := p.Decide(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := d.Streams[0x1234], d.Streams[0x5678]; a.Overhead != 0.1 || a.PaceBytesPerSecond != 2e6 || b.Overhead != 0 || d.Reason == "" {
		t.Fatalf("decision = %+v", d)
	}
}
