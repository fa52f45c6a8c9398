package host

import (
	"fmt"
	"regexp"
	"slices"
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
		if strings.HasPrefix(k, "PIPELINE_") || strings.HasPrefix(k, "STAGE_") || strings.HasPrefix(k, "HOOK_") || overridesTable(k) {
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

// idEnv lays MEDIAPIPE_STAGE_<ID>_<KEY> over the parameters of the stage
// carrying that id (ids are unique in a file, so no pipeline is named), and
// takes the variables it used out of env. Longer ids match first, so id
// "cam_1" takes STAGE_CAM_1_LISTEN before id "cam" could read it as key
// "1_listen". It runs after stageEnv: the id form wins over the positional.
func idEnv(env map[string]string, pipelines []*PipelineConfig) {
	var stages []*StageConfig
	for _, pc := range pipelines {
		for _, sc := range pc.Stages {
			if sc.ID != "" {
				stages = append(stages, sc)
			}
		}
	}
	slices.SortStableFunc(stages, func(a, b *StageConfig) int { return len(envName(b.ID)) - len(envName(a.ID)) })
	for _, sc := range stages {
		prefix := "STAGE_" + envName(sc.ID) + "_"
		for ek, ev := range env {
			if strings.HasPrefix(ek, prefix) && len(ek) > len(prefix) {
				sc.Params[strings.ToLower(strings.TrimPrefix(ek, prefix))] = core.EnvString(ev)
				delete(env, ek)
			}
		}
	}
}
