package host

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/knadh/koanf/parsers/toml/v2"
	"github.com/knadh/koanf/providers/rawbytes"
	"github.com/knadh/koanf/v2"

	"github.com/mediapipe/mediapipe/core"
)

// LoadFile reads a pipeline file and loads it as Load does.
func LoadFile(path string, reg *core.Registry) (*File, error) {
	data, err := readBounded(path)
	if err != nil {
		return nil, Problems{{File: path, Msg: fmt.Sprintf("cannot read: %v", errors.Unwrap(err))}}
	}
	dir := filepath.Dir(path)
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	return Load(path, dir, data, os.Environ(), reg)
}

// readBounded reads at most MaxFileBytes+1 bytes of path: enough for Parse
// to say the file is too large without reading all of a huge one.
func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, &os.PathError{Op: "read", Path: path, Err: err}
	}
	return data, nil
}

// Load parses pipeline-file bytes and resolves their stages against reg.
// Every problem is returned, as Problems, not only the first. The caller
// must call Close on the result when done (it stops plugin processes
// started to ask their specs).
func Load(name, dir string, data []byte, environ []string, reg *core.Registry) (*File, error) {
	f, probs := Parse(name, dir, data, environ)
	if f == nil {
		return nil, probs
	}
	probs = append(probs, Resolve(f, reg)...)
	if len(probs) > 0 {
		f.Close()
		probs.sort()
		return nil, probs
	}
	return f, nil
}

// Parse reads pipeline-file bytes into a File, laying the environment's
// MEDIAPIPE_… overrides over it: name labels problems, dir resolves
// relative plugin paths. It starts nothing; Resolve finds the stages. The
// File is nil only when the bytes are not TOML.
func Parse(name, dir string, data []byte, environ []string) (*File, Problems) {
	ps := &problems{file: name}
	if err := checkBounds(data); err != nil {
		ps.fileLevel(0, "%s", err)
		return nil, ps.list
	}
	k := koanf.New("\x00") // no key path splitting: TOML keys stay whole
	if err := k.Load(rawbytes.Provider(data), toml.Parser()); err != nil {
		ps.fileLevel(0, "TOML syntax: %s", tomlError(err, data))
		return nil, ps.list
	}
	root := k.Raw()
	env := parseEnv(environ)
	for _, key := range sortedKeys(root) {
		switch key {
		case "admin", "pipeline", "log", "hook":
		default:
			ps.fileLevel(0, "%s: unknown top-level key (expected [admin], [log], [[hook]] or [[pipeline]])", key)
		}
	}
	f := &File{Path: name, Dir: dir}
	if t := ps.table(root, &adminTable, env); t != nil {
		f.Admin = &AdminConfig{}
		ps.decode(&adminTable, t, f.Admin)
	}
	ps.decode(&logTable, ps.table(root, &logTable, env), &f.Log)
	f.Hooks = ps.hooks(root["hook"], env)
	f.Pipelines = ps.pipelines(root["pipeline"], dir, env)
	idEnv(env, f.Pipelines)
	ps.taps(f.Pipelines)
	for _, ek := range sortedKeys(env) {
		ps.fileLevel(afterPipelines, "environment %s%s: matches no pipeline stage or key (use %sPIPELINE_<NAME or number>_STAGE_<N>_<KEY> or %sSTAGE_<ID>_<KEY>)", EnvPrefix, ek, EnvPrefix, EnvPrefix)
	}
	return f, ps.list
}

// table returns root's table of ft with the environment's overrides of its
// keys laid over it, or nil when neither sets any.
func (ps *problems) table(root map[string]any, ft *fileTable, env map[string]string) map[string]any {
	raw, given := root[ft.name]
	t, ok := raw.(map[string]any)
	if given && !ok {
		ps.fileLevel(0, "%s: must be a table", ft.name)
	}
	return tableEnv(env, ft, t)
}

// decode decodes a file-level table t into dst, adding its problems.
func (ps *problems) decode(ft *fileTable, t map[string]any, dst any) {
	for _, msg := range ft.decode(t, dst) {
		ps.fileLevel(0, "%s", msg)
	}
}

// pipelines reads the [[pipeline]] array, raw as TOML gave it.
func (ps *problems) pipelines(raw any, dir string, env map[string]string) []*PipelineConfig {
	list, ok := raw.([]any)
	if !ok {
		if raw != nil {
			ps.fileLevel(0, "pipeline: must be an array of tables ([[pipeline]])")
		} else {
			ps.fileLevel(0, "no [[pipeline]] defined")
		}
		return nil
	}
	var out []*PipelineConfig
	names := map[string]bool{}
	for i, rp := range list {
		t, ok := rp.(map[string]any)
		if !ok {
			ps.fileLevel(i+1, "pipeline %d: must be a table", i+1)
			continue
		}
		pc := ps.pipeline(i+1, t, dir, env)
		if pc.Name != "" {
			if names[pc.Name] {
				ps.at(pc, 0, "", fmt.Sprintf("name: %q is used by another pipeline", pc.Name))
			}
			names[pc.Name] = true
		}
		out = append(out, pc)
	}
	return out
}

// pipeline reads the [[pipeline]] table t at position index, every stage
// included: one with problems stays, without use and plugin or with both.
func (ps *problems) pipeline(index int, t map[string]any, dir string, env map[string]string) *PipelineConfig {
	pc := &PipelineConfig{Index: index}
	keys := make(map[string]any, len(t))
	for k, v := range t {
		if k != "stage" {
			keys[k] = v
		}
	}
	for _, msg := range pipelineTable.decode(keys, pc) {
		ps.at(pc, 0, "", msg)
	}
	if from, given := keys["from"].(string); given && from == "" {
		ps.at(pc, 0, "", `from: must be the id of a stage in another pipeline, such as "repaired"`)
	}
	stages, ok := t["stage"].([]any)
	if !ok || len(stages) == 0 {
		ps.at(pc, 0, "", "has no stages ([[pipeline.stage]])")
	}
	for j, rs := range stages {
		pc.Stages = append(pc.Stages, ps.stage(pc, j+1, rs, dir, env))
	}
	return pc
}

// useOrPlugin says whether a stage table fails to pick exactly one stage
// (keys holds its use and plugin keys as given) and why; the message is ""
// where decoding already said it (a value that is no string). A key given
// empty is wrong, not absent: use = "" beside plugin = "./p" is a slip.
func useOrPlugin(keys map[string]any, sc *StageConfig) (msg string, broken bool) {
	use, useGiven := keys["use"]
	plugin, pluginGiven := keys["plugin"]
	_, useText := use.(string)
	_, pluginText := plugin.(string)
	switch {
	case useGiven && pluginGiven:
		return "give either use or plugin, not both", true
	case useGiven && !useText, pluginGiven && !pluginText:
		return "", true
	case useGiven && sc.Use == "":
		return `use: must be a stage name such as "udp-source"`, true
	case pluginGiven && sc.Plugin == "":
		return "plugin: must be a path to an executable", true
	case !useGiven && !pluginGiven:
		return `needs use = "NAME" (a built-in stage) or plugin = "PATH"`, true
	}
	return "", false
}

// stage reads the [[pipeline.stage]] raw at position index of pc: use or
// plugin (made absolute), and the rest as the stage's parameters.
func (ps *problems) stage(pc *PipelineConfig, index int, raw any, dir string, env map[string]string) *StageConfig {
	sc := &StageConfig{Index: index, Params: map[string]any{}}
	st, ok := raw.(map[string]any)
	if !ok {
		ps.at(pc, index, "", "must be a table")
		return sc
	}
	keys := map[string]any{}
	for k, v := range st {
		if stageTable.spec.Param(k) != nil {
			keys[k] = v
		} else {
			sc.Params[k] = v
		}
	}
	for _, msg := range stageTable.decode(keys, sc) {
		ps.at(pc, index, "", msg)
	}
	if id, given := keys["id"].(string); given && id == "" {
		ps.at(pc, index, "", `id: must be a name such as "repaired"`)
	}
	if msg, broken := useOrPlugin(keys, sc); broken {
		if msg != "" {
			ps.at(pc, index, "", msg)
		}
		sc.Use, sc.Plugin = "", "" // Resolve leaves a stage without either alone
		return sc
	}
	if sc.Plugin != "" && !filepath.IsAbs(sc.Plugin) {
		sc.Plugin = filepath.Join(dir, sc.Plugin)
	}
	stageEnv(env, pc, sc)
	return sc
}
