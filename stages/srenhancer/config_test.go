package srenhancer

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/sr"
)

func TestConfigCheck(t *testing.T) {
	def, _ := core.Default.Lookup("sr-enhancer")
	for _, c := range []struct {
		name string
		raw  map[string]any
		want string // "" for no error
	}{
		{"defaults", map[string]any{}, ""},
		{"http", map[string]any{"backend": "http", "url": "http://127.0.0.1:8000/sr"}, ""},
		{"http without url", map[string]any{"backend": "http"}, `url: required when backend = "http"`},
		{"http with a bad url", map[string]any{"backend": "http", "url": "127.0.0.1:8000"}, "url: "},
		{"plugin without path", map[string]any{"backend": "plugin"}, `path: required when backend = "plugin"`},
		{"unknown backend", map[string]any{"backend": "gpu"}, "backend: "},
		{"scale 5", map[string]any{"scale": 5}, "scale: 5 is above the maximum 4"},
		{"scale 1", map[string]any{"scale": 1}, "scale: 1 is below the minimum 2"},
		{"timeout not a duration", map[string]any{"timeout": "fast"}, "timeout: "},
		{"unknown key", map[string]any{"model": "x"}, "model: unknown parameter"},
	} {
		t.Run(c.name, func(t *testing.T) {
			errs := def.Check(c.raw)
			if c.want == "" {
				if len(errs) > 0 {
					t.Fatalf("errors: %v", errs)
				}
				return
			}
			if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), c.want) {
				t.Fatalf("errors %v, want one starting %q", errs, c.want)
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	def, _ := core.Default.Lookup("sr-enhancer")
	self, _ := os.Executable()
	for _, c := range []struct {
		name string
		raw  map[string]any
		want string
	}{
		{"ffmpeg missing", map[string]any{"ffmpeg": "/nonexistent/ffmpeg"}, "ffmpeg: "},
		{"plugin missing", map[string]any{"backend": "plugin", "path": "/nonexistent/sr-plugin"}, "backend plugin: "},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := def.Build(c.raw, core.TestEnv("sr-enhancer")); err == nil || !strings.HasPrefix(err.Error(), c.want) {
				t.Fatalf("err %v, want %q...", err, c.want)
			}
		})
	}
	t.Run("no plugin bridge linked", func(t *testing.T) {
		if _, err := exec.LookPath("ffmpeg"); err != nil {
			t.Skip("ffmpeg not on PATH")
		}
		st, err := def.Build(map[string]any{"backend": "plugin", "path": self}, core.TestEnv("sr-enhancer"))
		if err != nil {
			t.Fatal(err)
		}
		err = st.(core.Opener).Open(context.Background())
		if !errors.Is(err, sr.ErrNoPlugins) || !strings.HasPrefix(err.Error(), "backend plugin: ") {
			t.Fatalf("Open: %v", err)
		}
	})
}
