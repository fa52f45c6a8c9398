package core

import (
	"slices"
	"strings"
	"testing"
	"time"
)

type mapConfig struct {
	Rename  map[string]string        `param:"rename" doc:"old name → new name"`
	Weights map[string]int           `param:"weights" min:"0" max:"10" doc:"weights"`
	Waits   map[string]time.Duration `param:"waits" default:"a=1s, b=2s" doc:"waits"`
	Peers   map[string]string        `param:"peers" addr:"true" doc:"peers"`
	Tags    []string                 `param:"tags" doc:"tags"`
}

var mapSpec = Spec{Name: "maps", Params: ParamsOf(mapConfig{})}

// A TOML inline table decodes into a typed map, and its default and an
// environment override are written KEY=VALUE,...
func TestDecodeMapParams(t *testing.T) {
	var c mapConfig
	errs := mapSpec.Decode(map[string]any{
		"rename":  map[string]any{"live/cam1": "public/lobby"},
		"weights": map[string]any{"x": int64(3), "y": int64(0)},
		"peers":   EnvString("edge1=127.0.0.1:5000, edge2=127.0.0.1:5001"),
	}, &c)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if c.Rename["live/cam1"] != "public/lobby" || len(c.Rename) != 1 {
		t.Errorf("rename = %v", c.Rename)
	}
	if c.Weights["x"] != 3 || c.Weights["y"] != 0 || len(c.Weights) != 2 {
		t.Errorf("weights = %v", c.Weights)
	}
	if c.Waits["a"] != time.Second || c.Waits["b"] != 2*time.Second {
		t.Errorf("waits (default) = %v", c.Waits)
	}
	if c.Peers["edge2"] != "127.0.0.1:5001" {
		t.Errorf("peers (environment) = %v", c.Peers)
	}
	if got := mapSpec.Param("rename").Type; got != TypeStringMap {
		t.Errorf("rename type = %s", got)
	}
	if got := mapSpec.Param("waits").Type; got != TypeDurationMap {
		t.Errorf("waits type = %s", got)
	}
}

// Every parameter error quotes the value as TOML, never in Go's syntax.
func TestParamErrorsReadAsTOML(t *testing.T) {
	for _, tc := range []struct {
		key  string
		raw  any
		want string
	}{
		{"rename", []any{"a", "b"}, `rename: ["a", "b"] is not a table such as {"KEY" = "VALUE"}`},
		{"rename", map[string]any{"live/cam1": int64(1)}, `rename: "live/cam1": 1 is not a string`},
		{"weights", map[string]any{"a": int64(11)}, `weights: a: 11 is above the maximum 10`},
		{"weights", map[string]any{"a": "x"}, `weights: a: "x" is not an integer`},
		{"peers", map[string]any{"e": "nowhere"}, `peers: e: "nowhere" is not host:port`},
		{"tags", map[string]any{"a": int64(1), "b c": true}, `tags: {a = 1, "b c" = true} is not a list of strings`},
		{"tags", []any{"a", map[string]any{"x": 1.5}}, `tags: item 2: {x = 1.5} is not a string`},
		{"waits", EnvString("a"), `waits: "a" is not KEY=VALUE`},
	} {
		errs := mapSpec.Decode(map[string]any{tc.key: tc.raw}, nil)
		if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), tc.want) {
			t.Errorf("%v: got %v, want %q", tc.raw, errs, tc.want)
		}
		for _, e := range errs {
			if strings.Contains(e.Error(), "map[") {
				t.Errorf("%v: Go syntax in %q", tc.raw, e)
			}
		}
	}
}

// A list parameter given a single string takes it as one item, and an
// empty string as no item (retransmit = "" still means no repair).
func TestStringForList(t *testing.T) {
	p := &Param{Name: "retransmit", Type: TypeStringList, Addr: true}
	for raw, want := range map[string][]string{"": {}, "127.0.0.1:4242": {"127.0.0.1:4242"}} {
		v, err := p.Normalize(raw)
		if err != nil || !slices.Equal(v.([]string), want) {
			t.Errorf("Normalize(%q) = %v, %v; want %q", raw, v, err, want)
		}
	}
}
