package host

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/mediapipe/mediapipe/core"
)

// EnvPrefix starts every environment variable that overrides the file.
const EnvPrefix = "MEDIAPIPE_"

var nonAlnum = regexp.MustCompile(`[^A-Za-z0-9]+`)

// envName is how a variable names a pipeline or table: "edge-1" → "EDGE_1".
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
		if strings.HasPrefix(k, "PIPELINE_") || overridesTable(k) {
			out[k] = v
		}
	}
	return out
}

// tableEnvKey is the variable, prefix stripped, that overrides key of ft's
// table: ADMIN_LISTEN.
func tableEnvKey(ft *fileTable, key string) string { return envName(ft.name + "_" + key) }

// overridesTable reports whether k, prefix stripped, names a key of [admin] or [log].
func overridesTable(k string) bool {
	for _, ft := range fileTables {
		for _, p := range ft.spec.Params {
			if ft.name != "" && tableEnvKey(ft, p.Name) == k {
				return true
			}
		}
	}
	return false
}

// tableEnv lays MEDIAPIPE_<TABLE>_<KEY> over the keys of t, ft's table as
// the file has it (nil: absent), and takes the variables it used out of env.
func tableEnv(env map[string]string, ft *fileTable, t map[string]any) map[string]any {
	for _, p := range ft.spec.Params {
		ek := tableEnvKey(ft, p.Name)
		if v, ok := env[ek]; ok {
			if t == nil {
				t = map[string]any{}
			}
			t[p.Name] = core.EnvString(v)
			delete(env, ek)
		}
	}
	return t
}

// stageEnv lays MEDIAPIPE_PIPELINE_<NAME>_STAGE_<N>_<KEY> over the stage's
// parameters, the pipeline named or numbered (1-based) as in the file, and
// takes the variables it used out of env.
func stageEnv(env map[string]string, pc *PipelineConfig, sc *StageConfig) {
	for _, pipeKey := range []string{envName(pc.Name), fmt.Sprint(pc.Index)} {
		prefix := fmt.Sprintf("PIPELINE_%s_STAGE_%d_", pipeKey, sc.Index)
		for ek, ev := range env {
			if strings.HasPrefix(ek, prefix) {
				sc.Params[strings.ToLower(strings.TrimPrefix(ek, prefix))] = core.EnvString(ev)
				delete(env, ek)
			}
		}
	}
}
