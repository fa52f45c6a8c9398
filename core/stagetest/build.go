package stagetest

import (
	"testing"

	"github.com/knadh/koanf/parsers/toml/v2"

	"github.com/mediapipe/mediapipe/core"
)

// Build builds the stage registered in core.Default as name from raw
// parameters with env (core.TestEnv(name) when nil), or fails the test.
func Build(t testing.TB, name string, raw map[string]any, env *core.Env) core.Stage {
	t.Helper()
	def, ok := core.Default.Lookup(name)
	if !ok {
		t.Fatalf("%s is not registered", name)
	}
	if env == nil {
		env = core.TestEnv(name)
	}
	st, err := def.Build(raw, env)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// CheckSample fails the test unless sample (a stage's sample.toml) is valid
// TOML holding exactly one [[pipeline.stage]] block that uses name with
// parameters name's spec in core.Default accepts.
func CheckSample(t testing.TB, sample []byte, name string) {
	t.Helper()
	m, err := toml.Parser().Unmarshal(sample)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := m["pipeline"].(map[string]any)
	stages, _ := p["stage"].([]any)
	if len(stages) != 1 {
		t.Fatalf("sample holds %d stages", len(stages))
	}
	raw, _ := stages[0].(map[string]any)
	if raw["use"] != name {
		t.Fatalf("use = %v", raw["use"])
	}
	delete(raw, "use")
	def, ok := core.Default.Lookup(name)
	if !ok {
		t.Fatalf("%s is not registered", name)
	}
	if errs := def.Check(raw); len(errs) > 0 {
		t.Fatal(errs)
	}
}
