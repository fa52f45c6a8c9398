package core_test

import (
	"testing"

	"github.com/mediapipe/mediapipe/core"
)

func TestRegistryRefusesDuplicates(t *testing.T) {
	reg := core.NewRegistry()
	def := core.Define(core.Spec{Name: "src", Out: core.KindAV},
		func(c *struct{}, env *core.Env) (core.Stage, error) { return nil, nil })
	if err := reg.Add(def); err != nil {
		t.Fatal(err)
	}
	if err := reg.Add(def); err == nil {
		t.Fatal("duplicate name accepted")
	}
}
