package plugintest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/host"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	_ "github.com/mediapipe/mediapipe/stages/all"
)

const pipeline = `
[[pipeline]]
name = "cloud"
  [[pipeline.stage]]
  use = "rtmp-source"
  listen = "127.0.0.1:0"
  [[pipeline.stage]]
  use = "flv-tagger"
  [[pipeline.stage]]
  %s
  [[pipeline.stage]]
  use = "flv-file-sink"
  dir = "rec"
`

// validate loads a pipeline file (what `mediapipe validate` does) whose
// third stage is stage, from dir, and returns its problems' messages.
func validate(t *testing.T, dir, stage string) []string {
	t.Helper()
	path := filepath.Join(dir, "p.toml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(pipeline, stage)), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := host.LoadFile(path, core.Default)
	if err == nil {
		f.Close()
		return nil
	}
	var probs host.Problems
	if !errors.As(err, &probs) {
		t.Fatalf("LoadFile: %v", err)
	}
	var msgs []string
	for _, p := range probs {
		if p.Stage != 3 {
			t.Fatalf("a problem outside the stage under test: %s", p)
		}
		msgs = append(msgs, p.Msg)
	}
	return msgs
}

// TestValidateSRPlugin: validate starts a plugin backend, resolving its
// path against the pipeline file's directory, and reports what is wrong
// with it in the same words as for a stage plugin; the process it started
// is gone afterwards.
func TestValidateSRPlugin(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"sr-sharpen", "stream-filter"} {
		b, err := os.ReadFile(plugin(t, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	truth, err := os.ReadFile("/bin/true") // a program, but no plugin
	if err != nil {
		truth = []byte("#!/bin/sh\nexit 0\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "true"), truth, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, path string
		want       string // "" for no problem
	}{
		{"sr-sharpen", "./sr-sharpen", ""},
		{"missing", "./missing", "no such file"},
		{"not a plugin", "./true", "not a mediapipe plugin"},
		{"a stage plugin", "./stream-filter", "is a stage plugin, not an SR backend"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := validate(t, dir, `use = "sr-enhancer"
  backend = "plugin"
  path = `+strconv.Quote(c.path))
			if c.want == "" {
				if len(got) > 0 {
					t.Fatalf("problems: %q", got)
				}
			} else {
				abs := filepath.Join(dir, c.path)
				if len(got) != 1 || !strings.HasPrefix(got[0], "path: plugin "+abs+": ") || !strings.Contains(got[0], c.want) {
					t.Fatalf("problems %q, want one: path: plugin %s: …%s…", got, abs, c.want)
				}
				// The same words as a stage plugin gets (where the
				// question is not which kind it is).
				if c.name != "a stage plugin" {
					stage := validate(t, dir, `plugin = `+strconv.Quote(c.path))
					if want := "path: " + stage[0]; len(stage) != 1 || got[0] != want {
						t.Fatalf("sr backend: %q; stage plugin: %q", got, stage)
					}
				}
			}
			if left := testmedia.ChildProcs("sr-sharpen", "stream-filter"); len(left) > 0 {
				t.Fatalf("plugin processes left running: %v", left)
			}
		})
	}
	// An absolute path is taken as is.
	if got := validate(t, t.TempDir(), `use = "sr-enhancer"
  backend = "plugin"
  path = `+strconv.Quote(filepath.Join(dir, "sr-sharpen"))); len(got) > 0 {
		t.Fatalf("absolute path: %q", got)
	}
}
