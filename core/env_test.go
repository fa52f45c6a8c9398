package core

import (
	"path/filepath"
	"testing"
)

func TestInDir(t *testing.T) {
	abs := filepath.Join(t.TempDir(), "ca.pem")
	for _, c := range []struct{ dir, path, want string }{
		{"/etc/mediapipe", "ca.pem", "/etc/mediapipe/ca.pem"},
		{"/etc/mediapipe", "../keys/ca.pem", "/etc/keys/ca.pem"},
		{"/etc/mediapipe", abs, abs},
		{"/etc/mediapipe", "", ""}, // empty stays empty: "not set"
		{"", "ca.pem", "ca.pem"},   // no file directory known: as given
	} {
		if got := InDir(c.dir, c.path); got != c.want {
			t.Errorf("InDir(%q, %q) = %q, want %q", c.dir, c.path, got, c.want)
		}
	}
	env := &Env{Dir: "/srv/pipelines"}
	if got := env.Path("recordings"); got != "/srv/pipelines/recordings" {
		t.Errorf("Env.Path = %q", got)
	}
}
