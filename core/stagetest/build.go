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

// StartNamed builds the stage registered in core.Default as name from raw
// parameters with core.TestEnv(name) and starts it in a Harness (h.Env is
// that env), as a stage that takes input.
func StartNamed(t testing.TB, name string, raw map[string]any) *Harness {
	t.Helper()
	env := core.TestEnv(name)
	return Start(t, Build(t, name, raw, env), env, false)
}

// Pattern returns n bytes of a repeatable pattern that differs by seed:
// payloads a test can tell apart and compare byte for byte.
func Pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*13) ^ seed
	}
	return b
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
