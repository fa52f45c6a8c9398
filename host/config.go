package host

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/mediapipe/mediapipe/core"
)

// File is a pipeline file as Parse read it; after Resolve without problems,
// every stage has its definition.
type File struct {
	Path      string // as given
	Dir       string // directory relative paths in the file resolve against
	Admin     *AdminConfig
	Log       LogConfig
	Hooks     []*HookConfig // the [[hook]] tables, in order
	Pipelines []*PipelineConfig
}

// AdminConfig is the [admin] table: where /metrics and the control API are served.
type AdminConfig struct {
	Listen        string `param:"listen" required:"true" addr:"true" doc:"address the admin server listens on, such as 127.0.0.1:9090"`
	Token         string `param:"token" secret:"true" doc:"when set, every /api call (and /metrics unless metrics_public) needs the header Authorization: Bearer TOKEN; /healthz stays open"`
	MetricsPublic bool   `param:"metrics_public" default:"false" doc:"with a token set, serve /metrics without it (for a Prometheus that cannot send one)"`
}

// Validate refuses an empty address, which would listen on a random port.
func (c *AdminConfig) Validate() error {
	if c.Listen == "" {
		return errors.New(`listen: must be an address such as "127.0.0.1:9090"`)
	}
	return nil
}

// LogConfig is the optional [log] table.
type LogConfig struct {
	Level  string `param:"level" default:"info" enum:"debug,info,warn,error" doc:"least severe level logged (the run command's --log-level overrides it)"`
	Format string `param:"format" default:"text" enum:"text,json" doc:"text (key=value) or json, one record a line on stderr"`
}

// CheckLogLevel says why level is not a level [log] takes, or returns nil.
func CheckLogLevel(level string) error {
	_, err := logTable.spec.Param("level").Normalize(level)
	return err
}

// PipelineConfig is one [[pipeline]].
type PipelineConfig struct {
	Index  int    // 1-based position in the file
	Name   string `param:"name" required:"true" doc:"names the pipeline in problems, logs, metrics and environment overrides"`
	Queue  int    `param:"queue" default:"1024" min:"1" max:"1048576" doc:"capacity, in packets, of the queue in front of each stage"`
	From   string `param:"from" doc:"the id of a stage in another pipeline: this pipeline then has no source and receives every packet and stream start and end that stage emits, shared read-only; when it falls behind, its data packets are dropped (branch_full), never slowing the others"`
	Stages []*StageConfig
}

// Validate refuses an empty name, which nothing could refer to.
func (c *PipelineConfig) Validate() error {
	if c.Name == "" {
		return errors.New("name: " + pipelineTable.missing)
	}
	return nil
}

// Label is how problems name the pipeline: its name, or its position.
func (c *PipelineConfig) Label() string {
	if c.Name != "" {
		return c.Name
	}
	return fmt.Sprintf("#%d", c.Index)
}

// StageConfig is one [[pipeline.stage]]; Resolve sets its definition.
type StageConfig struct {
	Index  int            // 1-based position in the pipeline
	Use    string         `param:"use" doc:"a built-in stage, by name (listed below)"`
	Plugin string         `param:"plugin" doc:"a stage plugin executable, by path; a relative path starts at the file's directory"`
	ID     string         `param:"id" doc:"names this stage's output, unique in the file: for a pipeline's from = \"ID\" to branch off, and for MEDIAPIPE_STAGE_<ID>_<KEY> overrides"`
	Params map[string]any // the stage's own parameters, environment overrides laid over
	Def    core.Definition

	// Isolate runs a built-in stage out of process; Resolve swaps Def for
	// the bridge's isolated definition.
	Isolate bool `param:"isolate" default:"false" doc:"run this built-in stage in a child process of its own (this binary serving it through the plugin bridge): a crash or leak there is restarted with back-off like a plugin's"`
}

// Label is how problems name the stage: its built-in name or plugin path
// (the path finds the program that did not fit).
func (s *StageConfig) Label() string {
	if s.Plugin != "" {
		return s.Plugin
	}
	return s.Use
}

// SpecName is how logs and metric labels name the stage: its built-in name,
// or the name a loaded plugin's spec declares — not its path, so moving the
// program does not change the Prometheus series.
func (s *StageConfig) SpecName() string {
	if s.Def.Spec.Name != "" {
		return s.Def.Spec.Name
	}
	return s.Label()
}

// fileTable is one of the file's own tables: its keys are decoded and
// documented through a spec, as a stage's parameters are.
type fileTable struct {
	spec    core.Spec
	name    string // the table's key in the file, for problems and the environment; "" when problems place it
	takes   string // after an unknown key; %s lists the keys
	missing string // after a missing required key, instead of Decode's words
}

var (
	adminTable = fileTable{
		spec: core.Spec{Name: "[admin]", Params: core.ParamsOf(AdminConfig{}),
			Summary: "Optional. While the pipelines run, serves /metrics (Prometheus), the control API (docs/api.md: /api/streams, /api/streams/APP/KEY, DELETE to kick a publisher or /api/viewers/ID a viewer, /api/pipelines, POST /api/reload — re-read the file, as SIGHUP does; 422 with the problems of a file it refuses) and /healthz."},
		name: "admin", takes: "admin takes %s", missing: "required when [admin] is present",
	}
	logTable = fileTable{
		spec: core.Spec{Name: "[log]", Params: core.ParamsOf(LogConfig{}),
			Summary: "Optional. How the process logs."},
		name: "log", takes: "log takes %s",
	}
	pipelineTable = fileTable{
		spec: core.Spec{Name: "[[pipeline]]", Params: core.ParamsOf(PipelineConfig{}),
			Summary: "One pipeline; a file holds one or more. Its [[pipeline.stage]] tables follow in order: the first a source (or, with from, a stage taking the kind the tapped stage gives), the last a sink, each taking the kind the one before it gives."},
		takes: "a pipeline takes %s and [[pipeline.stage]]", missing: `required (a name such as "edge")`,
	}
	stageTable = fileTable{
		spec: core.Spec{Name: "[[pipeline.stage]]", Params: core.ParamsOf(StageConfig{}),
			Summary: "One stage: exactly one of use and plugin, then the stage's own parameters (see each stage below)."},
	}
)

// fileTables are the file's own tables, in the order the reference documents them.
var fileTables = []*fileTable{&adminTable, &logTable, &hookTable, &pipelineTable, &stageTable}

// DefaultQueue is the per-stage queue capacity when a pipeline sets none,
// as its queue tag says.
var DefaultQueue = func() int {
	var pc PipelineConfig
	if errs := pipelineTable.spec.Decode(map[string]any{"name": "x"}, &pc); len(errs) > 0 {
		panic(fmt.Sprintf("host: pipeline defaults: %v", errs))
	}
	return pc.Queue
}()

// decode fills dst, a pointer to the table's tagged struct, from t and
// returns a problem message per bad key: unknown keys first, then the rest
// sorted, then what dst's Validate says. Keys that decode well are filled
// even when others do not, so a pipeline with a bad queue keeps its name.
func (ft *fileTable) decode(t map[string]any, dst any) []string {
	prefix := ""
	if ft.name != "" {
		prefix = ft.name + "."
	}
	var msgs []string
	known := map[string]any{}
	for _, key := range sortedKeys(t) {
		if ft.spec.Param(key) == nil {
			msgs = append(msgs, fmt.Sprintf("%s%s: unknown key (%s)", prefix, key, fmt.Sprintf(ft.takes, ft.keys())))
			continue
		}
		known[key] = t[key]
	}
	errs := ft.spec.Decode(known, dst)
	if len(errs) == 0 {
		if v, ok := dst.(core.Validator); ok {
			if err := v.Validate(); err != nil {
				msgs = append(msgs, prefix+err.Error())
			}
		}
		return msgs
	}
	var bad []string
	for _, err := range errs {
		// Decode starts each error with its key.
		key, _, _ := strings.Cut(err.Error(), ":")
		if _, given := known[key]; !given && ft.missing != "" && ft.spec.Param(key) != nil {
			err = fmt.Errorf("%s: %s", key, ft.missing) // only a required key is missing
		}
		bad = append(bad, prefix+err.Error())
		delete(known, key)
	}
	sort.Strings(bad)
	_ = ft.spec.Decode(known, dst) // what is left decodes; a missing required key still stops it
	return append(msgs, bad...)
}

// keys lists the table's keys as a problem names them: "a, b".
func (ft *fileTable) keys() string {
	names := make([]string, len(ft.spec.Params))
	for i, p := range ft.spec.Params {
		names[i] = p.Name
	}
	return strings.Join(names, ", ")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
