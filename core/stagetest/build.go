package stagetest

import (
	"testing"

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

// Decode fills dst, the config struct of the stage registered in
// core.Default as name, from raw parameters and the spec's defaults, or
// fails the test: a test that builds a config in code takes the defaults
// from the struct tags, their one home.
func Decode(t testing.TB, name string, raw map[string]any, dst any) {
	t.Helper()
	def, ok := core.Default.Lookup(name)
	if !ok {
		t.Fatalf("%s is not registered", name)
	}
	if errs := def.Spec.Decode(raw, dst); len(errs) > 0 {
		t.Fatal(errs)
	}
}
