package host

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/knadh/koanf/parsers/toml/v2"
	"github.com/knadh/koanf/providers/rawbytes"
	"github.com/knadh/koanf/v2"

	"github.com/mediapipe/mediapipe/core"
)

// Problem is one thing wrong with a pipeline file, placed as precisely as
// possible: file, pipeline, stage position and key (inside Msg).
type Problem struct {
	File      string
	Pipeline  string // empty for file-level problems
	Stage     int    // 1-based; 0 for pipeline- or file-level problems
	StageName string
	Msg       string
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	b.WriteString(": ")
	if p.Pipeline != "" {
		fmt.Fprintf(&b, "pipeline %q", p.Pipeline)
		if p.Stage > 0 {
			fmt.Fprintf(&b, " stage %d", p.Stage)
			if p.StageName != "" {
				fmt.Fprintf(&b, " (%s)", p.StageName)
			}
		}
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is a list of problems that is also an error.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// File is a parsed and validated pipeline file.
type File struct {
	Path      string // as given
	Dir       string // directory relative paths in the file resolve against
	Admin     *AdminConfig
	Log       LogConfig
	Pipelines []*PipelineConfig
}

// AdminConfig is the [admin] table: where /metrics and /api/streams are served.
type AdminConfig struct {
	Listen string
}

// LogConfig is the optional [log] table.
type LogConfig struct {
	Level  string // one of LogLevels
	Format string // text or json
}

// LogLevels are the log levels a file, the environment or a flag may name.
var LogLevels = []string{"debug", "info", "warn", "error"}

// CheckLogLevel says why level is not one of LogLevels, or returns nil.
func CheckLogLevel(level string) error {
	if slices.Contains(LogLevels, level) {
		return nil
	}
	return fmt.Errorf("%q is not one of %s", level, strings.Join(LogLevels, ", "))
}

// PipelineConfig is one [[pipeline]].
type PipelineConfig struct {
	Name   string
	Queue  int // capacity of the queue in front of each stage
	Stages []*StageConfig
}

// StageConfig is one [[pipeline.stage]] with its definition resolved.
type StageConfig struct {
	Index  int
	Use    string // built-in name, or "" for a plugin
	Plugin string // absolute plugin path, or ""
	Params map[string]any
	Def    core.Definition
}

// Label is how problems and logs name the stage: its built-in name or plugin path.
func (s *StageConfig) Label() string {
	if s.Plugin != "" {
		return s.Plugin
	}
	return s.Use
}

// DefaultQueue is the per-stage queue capacity when a pipeline sets none.
const DefaultQueue = 1024

// LoadFile reads and validates a pipeline file. Every problem is returned,
// not only the first. The caller must call Close on the result when done
// (it stops plugin processes started to ask their specs).
func LoadFile(path string, reg *core.Registry) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, Problems{{File: path, Msg: fmt.Sprintf("cannot read: %v", errors.Unwrap(err))}}
	}
	dir := filepath.Dir(path)
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	return Parse(path, dir, data, os.Environ(), reg)
}

// Parse validates pipeline-file bytes. name labels problems, dir resolves
// relative plugin paths, environ supplies MEDIAPIPE_… overrides.
func Parse(name, dir string, data []byte, environ []string, reg *core.Registry) (*File, error) {
	f := &File{Path: name, Dir: dir}
	var probs Problems
	add := func(pipeline string, stage int, stageName, format string, args ...any) {
		probs = append(probs, Problem{File: name, Pipeline: pipeline, Stage: stage, StageName: stageName, Msg: fmt.Sprintf(format, args...)})
	}

	k := koanf.New("\x00") // no key path splitting: TOML keys stay whole
	if err := k.Load(rawbytes.Provider(data), toml.Parser()); err != nil {
		add("", 0, "", "TOML syntax: %s", tomlError(err, data))
		return nil, probs
	}
	root := k.Raw()
	env := parseEnv(environ)

	for _, key := range sortedKeys(root) {
		switch key {
		case "admin", "pipeline", "log":
		default:
			add("", 0, "", "%s: unknown top-level key (expected [admin], [log] or [[pipeline]])", key)
		}
	}

	// [admin]
	if raw, ok := root["admin"]; ok {
		t, ok := raw.(map[string]any)
		if !ok {
			add("", 0, "", "admin: must be a table")
		} else {
			f.Admin = &AdminConfig{}
			for _, key := range sortedKeys(t) {
				switch key {
				case "listen":
					if s, ok := t[key].(string); ok && s != "" {
						f.Admin.Listen = s
					} else {
						add("", 0, "", "admin.listen: must be an address such as \"127.0.0.1:9090\"")
					}
				default:
					add("", 0, "", "admin.%s: unknown key (admin takes listen)", key)
				}
			}
			if f.Admin.Listen == "" {
				if _, given := t["listen"]; !given {
					add("", 0, "", "admin.listen: required when [admin] is present")
				}
			}
		}
	}
	if v, ok := env["ADMIN_LISTEN"]; ok {
		if f.Admin == nil {
			f.Admin = &AdminConfig{}
		}
		f.Admin.Listen = v
		delete(env, "ADMIN_LISTEN")
	}

	// [log]
	f.Log = LogConfig{Level: "info", Format: "text"}
	if raw, ok := root["log"]; ok {
		t, ok := raw.(map[string]any)
		if !ok {
			add("", 0, "", "log: must be a table")
		} else {
			for _, key := range sortedKeys(t) {
				s, _ := t[key].(string)
				switch key {
				case "level":
					f.Log.Level = s
				case "format":
					f.Log.Format = s
				default:
					add("", 0, "", "log.%s: unknown key (log takes level, format)", key)
				}
			}
		}
	}
	for key, dst := range map[string]*string{"LOG_LEVEL": &f.Log.Level, "LOG_FORMAT": &f.Log.Format} {
		if v, ok := env[key]; ok {
			*dst = v
			delete(env, key)
		}
	}
	if err := CheckLogLevel(f.Log.Level); err != nil {
		add("", 0, "", "log.level: %v", err)
	}
	switch f.Log.Format {
	case "text", "json":
	default:
		add("", 0, "", "log.format: %q is not one of text, json", f.Log.Format)
	}

	// [[pipeline]]
	rawPipes, ok := root["pipeline"].([]any)
	if !ok {
		if _, given := root["pipeline"]; given {
			add("", 0, "", "pipeline: must be an array of tables ([[pipeline]])")
		} else {
			add("", 0, "", "no [[pipeline]] defined")
		}
		rawPipes = nil
	}
	names := map[string]bool{}
	for i, rp := range rawPipes {
		t, ok := rp.(map[string]any)
		if !ok {
			add("", 0, "", "pipeline %d: must be a table", i+1)
			continue
		}
		pc := &PipelineConfig{Queue: DefaultQueue}
		first := len(probs) // this pipeline's problems, sorted by stage at the end
		label := fmt.Sprintf("#%d", i+1)
		if n, ok := t["name"].(string); ok && n != "" {
			pc.Name, label = n, n
		} else {
			add(label, 0, "", "name: required (a name such as \"edge\")")
		}
		if pc.Name != "" {
			if names[pc.Name] {
				add(label, 0, "", "name: %q is used by another pipeline", pc.Name)
			}
			names[pc.Name] = true
		}
		for _, key := range sortedKeys(t) {
			switch key {
			case "name", "stage":
			case "queue":
				n, ok := t[key].(int64)
				if !ok || n < 1 || n > 1<<20 {
					add(label, 0, "", "queue: %s is not an integer from 1 to 1048576", show(t[key]))
				} else {
					pc.Queue = int(n)
				}
			default:
				add(label, 0, "", "%s: unknown key (a pipeline takes name, queue and [[pipeline.stage]])", key)
			}
		}
		rawStages, ok := t["stage"].([]any)
		if !ok || len(rawStages) == 0 {
			add(label, 0, "", "has no stages ([[pipeline.stage]])")
		}
		// slots holds every stage in file order, nil where it did not
		// resolve, so order and kind checks still run around a broken one.
		slots := make([]*StageConfig, len(rawStages))
		for j, rs := range rawStages {
			st, ok := rs.(map[string]any)
			if !ok {
				add(label, j+1, "", "must be a table")
				continue
			}
			sc := &StageConfig{Index: j + 1, Params: map[string]any{}}
			for key, v := range st {
				if key != "use" && key != "plugin" {
					sc.Params[key] = v
				}
			}
			use, useOK := st["use"].(string)
			plugin, pluginOK := st["plugin"].(string)
			_, useGiven := st["use"]
			_, pluginGiven := st["plugin"]
			switch {
			case useGiven && pluginGiven:
				add(label, j+1, "", "give either use or plugin, not both")
				continue
			case useGiven && (!useOK || use == ""):
				add(label, j+1, "", "use: must be a stage name such as \"udp-source\"")
				continue
			case pluginGiven && (!pluginOK || plugin == ""):
				add(label, j+1, "", "plugin: must be a path to an executable")
				continue
			case !useGiven && !pluginGiven:
				add(label, j+1, "", "needs use = \"NAME\" (a built-in stage) or plugin = \"PATH\"")
				continue
			}
			// Environment overrides: MEDIAPIPE_PIPELINE_<NAME>_STAGE_<N>_<KEY>,
			// the pipeline named or numbered (1-based) as in the file.
			for _, pipeKey := range []string{envName(pc.Name), fmt.Sprint(i + 1)} {
				envKey := fmt.Sprintf("PIPELINE_%s_STAGE_%d_", pipeKey, j+1)
				for ek, ev := range env {
					if strings.HasPrefix(ek, envKey) {
						sc.Params[strings.ToLower(strings.TrimPrefix(ek, envKey))] = core.EnvString(ev)
						delete(env, ek)
					}
				}
			}
			if useGiven {
				sc.Use = use
				def, ok := reg.Lookup(use)
				if !ok {
					add(label, j+1, use, "use: unknown stage %q (see mediapipe stages)", use)
					continue
				}
				sc.Def = def
			} else {
				if !filepath.IsAbs(plugin) {
					plugin = filepath.Join(dir, plugin)
				}
				sc.Plugin = plugin
				def, err := reg.LoadPlugin(plugin)
				if err != nil {
					add(label, j+1, plugin, "%v", err)
					continue
				}
				sc.Def = def
			}
			check := sc.Def.Check
			if in := sc.Def.CheckIn; in != nil {
				check = func(raw map[string]any) []error { return in(raw, dir) }
			}
			for _, err := range sortErrors(check(sc.Params)) {
				add(label, j+1, sc.Label(), "%v", err)
			}
			pc.Stages = append(pc.Stages, sc)
			slots[j] = sc
		}
		for _, p := range checkKinds(slots) {
			add(label, p.Stage, p.StageName, "%s", p.Msg)
		}
		mine := probs[first:]
		sort.SliceStable(mine, func(a, b int) bool { return mine[a].Stage < mine[b].Stage })
		f.Pipelines = append(f.Pipelines, pc)
	}
	for _, ek := range sortedKeys(env) {
		add("", 0, "", "environment %s%s: matches no pipeline stage or key (use %sPIPELINE_<NAME or number>_STAGE_<N>_<KEY>)", EnvPrefix, ek, EnvPrefix)
	}
	if len(probs) > 0 {
		f.Close()
		return nil, probs
	}
	return f, nil
}

// Close stops what loading the file started (plugin processes).
func (f *File) Close() {
	if f == nil {
		return
	}
	for _, pc := range f.Pipelines {
		for _, sc := range pc.Stages {
			if sc.Def.Close != nil {
				sc.Def.Close()
			}
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// show writes a TOML value as a problem quotes it.
func show(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%v", v)
}

func sortErrors(errs []error) []error {
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return errs
}
