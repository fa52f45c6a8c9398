package host

import (
	"regexp"
	"strings"
)

// EnvPrefix starts every environment variable that overrides the file.
const EnvPrefix = "MEDIAPIPE_"

var nonAlnum = regexp.MustCompile(`[^A-Za-z0-9]+`)

func envName(s string) string { return strings.ToUpper(nonAlnum.ReplaceAllString(s, "_")) }

// parseEnv collects MEDIAPIPE_* variables, prefix stripped.
func parseEnv(environ []string) map[string]string {
	out := map[string]string{}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, EnvPrefix) {
			continue
		}
		k = strings.TrimPrefix(k, EnvPrefix)
		switch {
		case k == "ADMIN_LISTEN", k == "LOG_LEVEL", k == "LOG_FORMAT", strings.HasPrefix(k, "PIPELINE_"):
			out[k] = v
		}
	}
	return out
}
