package host_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/host"
)

type srcConfig struct {
	Listen string        `param:"listen" required:"true" doc:"address"`
	Key    string        `param:"publish_key" secret:"true" doc:"secret"`
	Idle   time.Duration `param:"idle_timeout" default:"10s" min:"0.1" doc:"idle"`
}

type midConfig struct {
	MaxPayload int      `param:"max_payload" default:"1180" min:"200" max:"65000" doc:"size"`
	Ratio      float64  `param:"ratio" default:"0.5" min:"0" max:"1" doc:"ratio"`
	Mode       string   `param:"mode" default:"a" enum:"a,b" doc:"mode"`
	On         bool     `param:"on" doc:"flag"`
	Dests      []string `param:"destinations" doc:"list"`
}

type sinkConfig struct {
	Listen string `param:"listen" required:"true" doc:"address"`
}

// testRegistry holds fake stages of each shape, so config tests need no real stage.
func testRegistry(t *testing.T) *core.Registry {
	t.Helper()
	reg := core.NewRegistry()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(reg.Add(core.Define(core.Spec{Name: "src", Summary: "test source", Out: core.KindAV},
		func(c *srcConfig, env *core.Env) (core.Stage, error) { return &fakeSource{}, nil })))
	must(reg.Add(core.Define(core.Spec{Name: "av2flv", Summary: "av→flv", In: core.KindAV, Out: core.KindFLV},
		func(c *midConfig, env *core.Env) (core.Stage, error) { return passStage{}, nil })))
	must(reg.Add(core.Define(core.Spec{Name: "flv2rtp", Summary: "flv→rtp", In: core.KindFLV, Out: core.KindRTP},
		func(c *midConfig, env *core.Env) (core.Stage, error) { return passStage{}, nil })))
	must(reg.Add(core.Define(core.Spec{Name: "rtpsink", Summary: "rtp sink", In: core.KindRTP},
		func(c *sinkConfig, env *core.Env) (core.Stage, error) { return sinkStage{}, nil })))
	must(reg.Add(core.Define(core.Spec{Name: "flvsink", Summary: "flv sink", In: core.KindFLV},
		func(c *sinkConfig, env *core.Env) (core.Stage, error) { return sinkStage{}, nil })))
	return reg
}

type fakeSource struct{}

func (fakeSource) Run(ctx context.Context, _ <-chan *core.Packet, out core.Output) error {
	s := core.NewStream("live/test")
	out.Emit(core.NewEvent(core.EventStart, s))
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			out.Emit(core.NewEvent(core.EventEnd, s))
			return nil
		case <-tick.C:
			p := core.NewPacket(4)
			copy(p.Data, "data")
			p.Stream = s
			out.Emit(p)
		}
	}
}

type passStage struct{}

func (passStage) Run(ctx context.Context, in <-chan *core.Packet, out core.Output) error {
	for p := range in {
		out.Emit(p)
	}
	return nil
}

type sinkStage struct{}

func (sinkStage) Run(ctx context.Context, in <-chan *core.Packet, out core.Output) error {
	for p := range in {
		p.Release()
	}
	return nil
}

const goodFile = `
[admin]
listen = "127.0.0.1:0"

[[pipeline]]
name = "cloud"
  [[pipeline.stage]]
  use = "src"
  listen = "127.0.0.1:1935"
  publish_key = "hunter2"
  [[pipeline.stage]]
  use = "av2flv"
  [[pipeline.stage]]
  use = "flv2rtp"
  max_payload = 1180
  destinations = ["a", "b"]
  [[pipeline.stage]]
  use = "rtpsink"
  listen = "x"
`

func TestParseGoodFile(t *testing.T) {
	f, err := host.Load("good.toml", ".", []byte(goodFile), nil, testRegistry(t))
	if err != nil {
		t.Fatalf("good file refused:\n%v", err)
	}
	defer f.Close()
	if len(f.Pipelines) != 1 || len(f.Pipelines[0].Stages) != 4 || f.Admin.Listen != "127.0.0.1:0" {
		t.Fatalf("parsed wrongly: %+v", f)
	}
}

// problemCase is a pipeline file (and environment) and every problem line
// loading it must report, exactly, in order.
type problemCase struct {
	name string
	file string
	env  []string
	want []string // every problem line, exactly
}

// inEdge is a file whose pipeline "edge" starts with a source stage, then body.
func inEdge(body string) string {
	return "[[pipeline]]\nname = \"edge\"\n[[pipeline.stage]]\nuse = \"src\"\nlisten = \"l\"\n" + body
}

var problemCases = []problemCase{
	{"toml syntax", "[[pipeline]\nname=", nil,
		[]string{"t.toml: TOML syntax: line 1, column 12: expected character ]"}},
	{"no pipelines", "", nil, []string{"t.toml: no [[pipeline]] defined"}},
	{"unknown stage", inEdge("[[pipeline.stage]]\nuse = \"nope\"\n"), nil,
		[]string{`t.toml: pipeline "edge" stage 2 (nope): use: unknown stage "nope" (see mediapipe stages)`}},
	{"unknown key, mistyped and out of range, all at once",
		inEdge("[[pipeline.stage]]\nuse = \"av2flv\"\nmax_payload = 10\nratio = \"x\"\nmode = \"c\"\nfoo = 1\n[[pipeline.stage]]\nuse = \"flv2rtp\"\n[[pipeline.stage]]\nuse = \"rtpsink\"\nlisten = \"x\"\n"), nil,
		[]string{
			`t.toml: pipeline "edge" stage 2 (av2flv): foo: unknown parameter (av2flv takes max_payload, ratio, mode, on, destinations)`,
			`t.toml: pipeline "edge" stage 2 (av2flv): max_payload: 10 is below the minimum 200`,
			`t.toml: pipeline "edge" stage 2 (av2flv): mode: "c" is not one of a, b`,
			`t.toml: pipeline "edge" stage 2 (av2flv): ratio: "x" is not a number`,
		}},
	{"missing required", "[[pipeline]]\nname = \"edge\"\n[[pipeline.stage]]\nuse = \"src\"\n[[pipeline.stage]]\nuse = \"av2flv\"\n[[pipeline.stage]]\nuse = \"flvsink\"\nlisten = \"x\"\n", nil,
		[]string{`t.toml: pipeline "edge" stage 1 (src): listen: required parameter is missing`}},
	{"an unknown stage hides no order or kind problem", inEdge("[[pipeline.stage]]\nuse = \"nope\"\n[[pipeline.stage]]\nuse = \"src\"\nlisten = \"m\"\n[[pipeline.stage]]\nuse = \"flvsink\"\nlisten = \"x\"\n[[pipeline.stage]]\nuse = \"av2flv\"\n"), nil,
		[]string{
			`t.toml: pipeline "edge" stage 2 (nope): use: unknown stage "nope" (see mediapipe stages)`,
			`t.toml: pipeline "edge" stage 3 (src): src is a source (no input) and can only be the first stage`,
			`t.toml: pipeline "edge" stage 4 (flvsink): takes flv input but stage 3 (src) outputs av`,
			`t.toml: pipeline "edge" stage 4 (flvsink): flvsink is a sink (no output) and must be the last stage, but stage 5 (av2flv) follows`,
			`t.toml: pipeline "edge" stage 5 (av2flv): the last stage must be a sink, but av2flv outputs flv that nothing consumes`,
		}},
	{"a sink followed by a broken stage", inEdge("[[pipeline.stage]]\nuse = \"av2flv\"\n[[pipeline.stage]]\nuse = \"flvsink\"\nlisten = \"x\"\n[[pipeline.stage]]\nuse = \"nope\"\n"), nil,
		[]string{
			`t.toml: pipeline "edge" stage 3 (flvsink): flvsink is a sink (no output) and must be the last stage, but stage 4 follows`,
			`t.toml: pipeline "edge" stage 4 (nope): use: unknown stage "nope" (see mediapipe stages)`,
		}},
	{"repeated key has its line", "[admin]\nlisten = \"a:1\"\nlisten = \"b:2\"\n", nil,
		[]string{`t.toml: TOML syntax: line 3: key listen is already defined`}},
	{"repeated table has its line", "[admin]\nlisten = \"a:1\"\n\n[admin]\nlisten = \"b:2\"\n", nil,
		[]string{`t.toml: TOML syntax: line 4: table admin already exists`}},
	{"table after array of tables has its line", "[[pipeline]]\nname = \"a\"\n[pipeline]\n", nil,
		[]string{`t.toml: TOML syntax: line 3: key pipeline should be a table, not a array table`}},
	{"kind mismatch", inEdge("[[pipeline.stage]]\nuse = \"av2flv\"\n[[pipeline.stage]]\nuse = \"rtpsink\"\nlisten = \"x\"\n"), nil,
		[]string{`t.toml: pipeline "edge" stage 3 (rtpsink): takes rtp input but stage 2 (av2flv) outputs flv`}},
	{"sink followed by more", inEdge("[[pipeline.stage]]\nuse = \"av2flv\"\n[[pipeline.stage]]\nuse = \"flvsink\"\nlisten = \"x\"\n[[pipeline.stage]]\nuse = \"flvsink\"\nlisten = \"y\"\n"), nil,
		[]string{
			`t.toml: pipeline "edge" stage 3 (flvsink): flvsink is a sink (no output) and must be the last stage, but stage 4 (flvsink) follows`,
		}},
	{"source in the middle", inEdge("[[pipeline.stage]]\nuse = \"src\"\nlisten = \"m\"\n[[pipeline.stage]]\nuse = \"av2flv\"\n[[pipeline.stage]]\nuse = \"flvsink\"\nlisten = \"x\"\n"), nil,
		[]string{`t.toml: pipeline "edge" stage 2 (src): src is a source (no input) and can only be the first stage`}},
	{"first is not a source", "[[pipeline]]\nname = \"p\"\n[[pipeline.stage]]\nuse = \"av2flv\"\n[[pipeline.stage]]\nuse = \"flvsink\"\nlisten = \"x\"\n", nil,
		[]string{`t.toml: pipeline "p" stage 1 (av2flv): the first stage must be a source, but av2flv takes av input`}},
	{"last is not a sink", inEdge("[[pipeline.stage]]\nuse = \"av2flv\"\n"), nil,
		[]string{`t.toml: pipeline "edge" stage 2 (av2flv): the last stage must be a sink, but av2flv outputs flv that nothing consumes`}},
	{"secret never shown", "[[pipeline]]\nname = \"p\"\n[[pipeline.stage]]\nuse = \"src\"\nlisten = \"l\"\npublish_key = 12345\n[[pipeline.stage]]\nuse = \"av2flv\"\n[[pipeline.stage]]\nuse = \"flvsink\"\nlisten = \"x\"\n", nil,
		[]string{`t.toml: pipeline "p" stage 1 (src): publish_key: (secret) is not a string`}},
	{"duration not a duration", "[[pipeline]]\nname = \"p\"\n[[pipeline.stage]]\nuse = \"src\"\nlisten = \"l\"\nidle_timeout = \"fast\"\n[[pipeline.stage]]\nuse = \"av2flv\"\n[[pipeline.stage]]\nuse = \"flvsink\"\nlisten = \"x\"\n", nil,
		[]string{`t.toml: pipeline "p" stage 1 (src): idle_timeout: "fast" is not a duration`}},
	{"no use or plugin, both", "[[pipeline]]\nname = \"p\"\n[[pipeline.stage]]\nlisten = \"l\"\n[[pipeline.stage]]\nuse = \"a\"\nplugin = \"b\"\n", nil,
		[]string{
			`t.toml: pipeline "p" stage 1: needs use = "NAME" (a built-in stage) or plugin = "PATH"`,
			`t.toml: pipeline "p" stage 2: give either use or plugin, not both`,
		}},
	{"use or plugin given empty", "[[pipeline]]\nname = \"p\"\n[[pipeline.stage]]\nuse = \"\"\n[[pipeline.stage]]\nplugin = \"\"\n[[pipeline.stage]]\nuse = \"\"\nplugin = \"./p\"\n[[pipeline.stage]]\nuse = 4\n", nil,
		[]string{
			`t.toml: pipeline "p" stage 1: use: must be a stage name such as "udp-source"`,
			`t.toml: pipeline "p" stage 2: plugin: must be a path to an executable`,
			`t.toml: pipeline "p" stage 3: give either use or plugin, not both`,
			`t.toml: pipeline "p" stage 4: use: 4 is not a string`,
		}},
	{"plugins unavailable", "[[pipeline]]\nname = \"p\"\n[[pipeline.stage]]\nplugin = \"/x/y\"\n", nil,
		[]string{`t.toml: pipeline "p" stage 1 (/x/y): plugins are not available in this build`}},
	{"unknown keys at every level", "bogus = 1\n[admin]\nport = 1\n[[pipeline]]\nname = \"p\"\ncolour = \"red\"\n[[pipeline.stage]]\nuse = \"src\"\nlisten = \"l\"\n[[pipeline.stage]]\nuse = \"av2flv\"\n[[pipeline.stage]]\nuse = \"flvsink\"\nlisten = \"x\"\n", nil,
		[]string{
			`t.toml: bogus: unknown top-level key (expected [admin], [log], [[hook]] or [[pipeline]])`,
			`t.toml: admin.port: unknown key (admin takes listen, token, metrics_public)`,
			`t.toml: admin.listen: required when [admin] is present`,
			`t.toml: pipeline "p": colour: unknown key (a pipeline takes name, queue, from and [[pipeline.stage]])`,
		}},
	{"hooks are checked, each placed by its position", "[[hook]]\nurl = \"ftp://x\"\nevents = [\"publish\"]\n[[hook]]\nurl = \"http://127.0.0.1:1/e\"\nevents = [\"publish\", \"nope\"]\n[[hook]]\nurl = \"http://127.0.0.1:1/e\"\nevents = [\"play\"]\nsecret = 12345\ncolour = 1\n[[hook]]\nurl = \"http://127.0.0.1:1/e\"\n" +
		"[[pipeline]]\nname = \"p\"\n[[pipeline.stage]]\nuse = \"src\"\nlisten = \"l\"\n[[pipeline.stage]]\nuse = \"av2flv\"\n[[pipeline.stage]]\nuse = \"flvsink\"\nlisten = \"x\"\n", nil,
		[]string{
			`t.toml: hook 1: url: must be an http:// or https:// URL such as "http://127.0.0.1:8080/events"`,
			`t.toml: hook 2: events: "nope" is not an event (take any of publish, unpublish, play, stop, record_done, stream_start, stream_end)`,
			`t.toml: hook 3: colour: unknown key (a hook takes url, events, secret, queue)`,
			`t.toml: hook 3: secret: (secret) is not a string`,
			`t.toml: hook 4: events: required in a [[hook]]`,
		}},
	{"the file's own keys are checked as stage parameters are",
		"[log]\nlevel = \"loud\"\n[[pipeline]]\nname = \"edge\"\nqueue = 0\n[[pipeline.stage]]\nuse = \"src\"\nlisten = \"l\"\n[[pipeline.stage]]\nuse = \"av2flv\"\n[[pipeline.stage]]\nuse = \"flvsink\"\nlisten = \"x\"\n",
		[]string{"MEDIAPIPE_LOG_FORMAT=xml"},
		[]string{
			`t.toml: log.format: "xml" is not one of text, json`,
			`t.toml: log.level: "loud" is not one of debug, info, warn, error`,
			`t.toml: pipeline "edge": queue: 0 is below the minimum 1`,
		}},
	{"env override with a bad value", inEdge("[[pipeline.stage]]\nuse = \"av2flv\"\n[[pipeline.stage]]\nuse = \"flvsink\"\nlisten = \"x\"\n"),
		[]string{"MEDIAPIPE_PIPELINE_EDGE_STAGE_2_MAX_PAYLOAD=big", "MEDIAPIPE_PIPELINE_NOPE_STAGE_1_X=1"},
		[]string{
			`t.toml: pipeline "edge" stage 2 (av2flv): max_payload: "big" is not an integer`,
			`t.toml: environment MEDIAPIPE_PIPELINE_NOPE_STAGE_1_X: matches no pipeline stage or key (use MEDIAPIPE_PIPELINE_<NAME or number>_STAGE_<N>_<KEY> or MEDIAPIPE_STAGE_<ID>_<KEY>)`,
		}},
}

func TestParseProblems(t *testing.T) {
	for _, tc := range problemCases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := host.Load("t.toml", "/tmp", []byte(tc.file), tc.env, testRegistry(t))
			if tc.want == nil {
				if err != nil {
					t.Fatalf("unexpected problems:\n%v", err)
				}
				f.Close()
				return
			}
			if err == nil {
				t.Fatalf("no problems reported, want %q", tc.want)
			}
			got := strings.Split(err.Error(), "\n")
			if len(got) != len(tc.want) {
				t.Fatalf("got %d problems, want %d:\n%s", len(got), len(tc.want), err)
			}
			for i := range got {
				if tc.name == "toml syntax" {
					if !strings.HasPrefix(got[i], tc.want[i]) {
						t.Errorf("problem %d:\n got %s\nwant prefix %s", i, got[i], tc.want[i])
					}
					continue
				}
				if got[i] != tc.want[i] {
					t.Errorf("problem %d:\n got %s\nwant %s", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestEnvOverrideApplies(t *testing.T) {
	env := []string{"MEDIAPIPE_PIPELINE_CLOUD_STAGE_3_MAX_PAYLOAD=1300", "MEDIAPIPE_PIPELINE_1_STAGE_1_LISTEN=127.0.0.1:1936", "MEDIAPIPE_ADMIN_LISTEN=127.0.0.1:9999"}
	f, err := host.Load("t.toml", ".", []byte(goodFile), env, testRegistry(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := f.Pipelines[0].Stages[2].Params["max_payload"]; got != core.EnvString("1300") {
		t.Fatalf("max_payload = %#v, want the environment's 1300", got)
	}
	// The pipeline by its number in the file, as well as by name.
	if got := f.Pipelines[0].Stages[0].Params["listen"]; got != core.EnvString("127.0.0.1:1936") {
		t.Fatalf("listen = %#v, want the environment's 127.0.0.1:1936", got)
	}
	if f.Admin.Listen != "127.0.0.1:9999" {
		t.Fatalf("admin listen = %q", f.Admin.Listen)
	}
}

// A stage carrying an id is addressed by it: MEDIAPIPE_STAGE_<ID>_<KEY>,
// the id written as a pipeline name is (hyphens become underscores); of two
// ids one of which extends the other, each takes only its own variables.
func TestEnvOverrideByID(t *testing.T) {
	file := `
[[pipeline]]
name = "edge-1"
  [[pipeline.stage]]
  use = "src"
  id = "cam"
  listen = "127.0.0.1:1935"
  [[pipeline.stage]]
  use = "rtpsink"
  id = "cam-1"
  listen = "x"
`
	env := []string{"MEDIAPIPE_STAGE_CAM_1_LISTEN=127.0.0.1:7001", "MEDIAPIPE_STAGE_CAM_LISTEN=127.0.0.1:1936", "MEDIAPIPE_PIPELINE_EDGE_1_STAGE_1_PUBLISH_KEY=k"}
	f, probs := host.Parse("t.toml", ".", []byte(file), env)
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	st := f.Pipelines[0].Stages
	if st[0].ID != "cam" || st[1].ID != "cam-1" {
		t.Fatalf("ids = %q, %q", st[0].ID, st[1].ID)
	}
	if _, leaked := st[0].Params["id"]; leaked {
		t.Error("id reached the stage's own parameters")
	}
	if got := st[0].Params["listen"]; got != core.EnvString("127.0.0.1:1936") {
		t.Errorf("cam listen = %#v", got)
	}
	if got := st[0].Params["publish_key"]; got != core.EnvString("k") {
		t.Errorf("cam publish_key (pipeline edge-1 by name) = %#v", got)
	}
	if got := st[1].Params["listen"]; got != core.EnvString("127.0.0.1:7001") {
		t.Errorf("cam-1 listen = %#v", got)
	}
	if len(st[0].Params) != 2 || len(st[1].Params) != 1 {
		t.Errorf("params: %v, %v", st[0].Params, st[1].Params)
	}
}

// Parse starts nothing: a plugin stage is only a path until Resolve asks
// the registry's loader for it.
func TestParseThenResolve(t *testing.T) {
	file := "[[pipeline]]\nname = \"p\"\n[[pipeline.stage]]\nuse = \"src\"\nlisten = \"l\"\n[[pipeline.stage]]\nplugin = \"bin/sink\"\nlisten = \"x\"\n"
	f, probs := host.Parse("t.toml", "/srv", []byte(file), []string{"MEDIAPIPE_LOG_LEVEL=debug"})
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	sc := f.Pipelines[0].Stages[1]
	if sc.Plugin != "/srv/bin/sink" || sc.Def.Build != nil {
		t.Fatalf("parsed stage 2 = %+v, want the absolute plugin path and no definition", sc)
	}
	if f.Log.Level != "debug" || f.Log.Format != "text" || f.Pipelines[0].Queue != host.DefaultQueue {
		t.Fatalf("log %+v, queue %d: want the environment's level and the tags' defaults", f.Log, f.Pipelines[0].Queue)
	}
	reg := testRegistry(t)
	var asked []string
	reg.SetPluginLoader(func(path string) (core.Definition, error) {
		asked = append(asked, path)
		def, _ := reg.Lookup("flvsink")
		return core.Definition{Spec: core.Spec{Name: "sink", In: core.KindAV}, Check: def.Check, Build: def.Build}, nil
	})
	if probs := host.Resolve(f, reg); len(probs) > 0 {
		t.Fatal(probs)
	}
	if len(asked) != 1 || asked[0] != "/srv/bin/sink" || f.Pipelines[0].Stages[1].Def.Build == nil {
		t.Fatalf("loader asked for %q; stage 2 resolved: %v", asked, f.Pipelines[0].Stages[1].Def.Build != nil)
	}
}

// TestParseBounds: a file the TOML parser would chew on for a long time
// (100,000 nested arrays took over 20 s) or a huge one is refused before
// parsing, at once and with a clear problem.
func TestParseBounds(t *testing.T) {
	deep := "x = " + strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000) + "\n"
	inline := "x = " + strings.Repeat("{a=", 40) + "1" + strings.Repeat("}", 40) + "\n"
	big := "# " + strings.Repeat("x", host.MaxFileBytes) + "\n"
	for _, tc := range []struct{ name, file, want string }{
		{"nested arrays", deep, "t.toml: line 1, column 37: arrays or inline tables nested deeper than 32"},
		{"nested inline tables", inline, "t.toml: line 1, column 101: arrays or inline tables nested deeper than 32"},
		{"too large", big, "t.toml: the file is larger than 1048576 bytes (1 MiB), the most a pipeline file may be"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			_, err := host.Load("t.toml", "/tmp", []byte(tc.file), nil, testRegistry(t))
			if d := time.Since(start); d > time.Second {
				t.Errorf("took %v, want < 1 s", d)
			}
			if err == nil || err.Error() != tc.want {
				t.Fatalf("got %v\nwant %s", err, tc.want)
			}
		})
	}
	// LoadFile reads no more of a huge file than it needs to say so.
	path := filepath.Join(t.TempDir(), "big.toml")
	if err := os.WriteFile(path, []byte(big+big), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := host.LoadFile(path, testRegistry(t)); err == nil || !strings.Contains(err.Error(), "larger than 1048576 bytes") {
		t.Fatalf("LoadFile of a 2 MiB file: %v", err)
	}
	// Brackets in strings and comments do not count; real nesting under the
	// bound parses.
	ok := "# " + strings.Repeat("[", 100) + "\n[[pipeline]]\nname = \"" + strings.Repeat("[", 40) + "\"\n" +
		"x = '''\n" + strings.Repeat("{", 40) + "'''\ny = \"\"\"a\\\"\"\"" + strings.Repeat("[", 40) + "\"\"\"\n" +
		"z = " + strings.Repeat("[", 30) + strings.Repeat("]", 30) + "\n"
	_, err := host.Load("t.toml", "/tmp", []byte(ok), nil, testRegistry(t))
	if err != nil && (strings.Contains(err.Error(), "nested") || strings.Contains(err.Error(), "TOML syntax")) {
		t.Fatalf("a legal file refused: %v", err)
	}
}

// A [[hook]]'s keys come from MEDIAPIPE_HOOK_<N>_<KEY> too, so a hook's
// secret (or a URL carrying a token) can live in a Kubernetes Secret; a
// variable for a hook the file does not have is a problem.
func TestEnvOverridesHook(t *testing.T) {
	file := "[[hook]]\nurl = \"http://127.0.0.1:9/in-file\"\nevents = [\"publish\"]\n" + goodFile
	env := []string{"MEDIAPIPE_HOOK_1_SECRET=from-env", "MEDIAPIPE_HOOK_1_URL=http://127.0.0.1:9/from-env"}
	f, err := host.Load("t.toml", ".", []byte(file), env, testRegistry(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if len(f.Hooks) != 1 || f.Hooks[0].Secret != "from-env" || f.Hooks[0].URL != "http://127.0.0.1:9/from-env" {
		t.Fatalf("hooks %+v: want the environment's secret and url", f.Hooks)
	}
	_, err = host.Load("t.toml", ".", []byte(file), []string{"MEDIAPIPE_HOOK_2_SECRET=x"}, testRegistry(t))
	if err == nil || !strings.Contains(err.Error(), "MEDIAPIPE_HOOK_2_SECRET") {
		t.Fatalf("a variable for a hook the file lacks: %v, want a problem naming it", err)
	}
}
