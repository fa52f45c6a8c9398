package all_test

import (
	"strings"
	"testing"

	"github.com/mediapipe/mediapipe/core"
)

// The three stages that admit clients take the auth hook's parameters
// alike: auth_url must be an http(s) URL with a host, and all three are
// live on reload.
func TestAuthParams(t *testing.T) {
	for _, name := range []string{"rtmp-source", "httpflv-sink", "hls-sink"} {
		def, ok := core.Default.Lookup(name)
		if !ok {
			t.Fatalf("%s is not registered", name)
		}
		for _, p := range []string{"auth_url", "auth_timeout", "auth_fail_open"} {
			if q := def.Spec.Param(p); q == nil || !q.Live || q.Doc == "" {
				t.Errorf("%s: %s missing, not live or undocumented: %+v", name, p, q)
			}
		}
		check := func(url string) []error {
			return def.Check(map[string]any{"listen": "127.0.0.1:0", "auth_url": url})
		}
		if errs := check("http://127.0.0.1:8080/auth"); len(errs) != 0 {
			t.Errorf("%s: a good auth_url refused: %v", name, errs)
		}
		for _, bad := range []string{"ftp://127.0.0.1/auth", "127.0.0.1:8080", "http://"} {
			if errs := check(bad); len(errs) == 0 || !strings.Contains(errs[0].Error(), "auth_url") {
				t.Errorf("%s: auth_url %q: %v", name, bad, errs)
			}
		}
	}
}
