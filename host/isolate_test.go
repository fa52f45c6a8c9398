package host_test

import (
	"strings"
	"testing"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/host"
)

const isolatePipeline = `
[[pipeline]]
name = "p"
  [[pipeline.stage]]
  use = "src"
  listen = "127.0.0.1:1"
  isolate = true
  [[pipeline.stage]]
  %s
  isolate = true
  [[pipeline.stage]]
  use = "rtpsink"
  listen = "127.0.0.1:2"
`

// isolateRegistry is testRegistry with a source that cannot be isolated
// and a plugin loader that serves flv2rtp's definition for any path.
func isolateRegistry(t *testing.T) *core.Registry {
	reg := testRegistry(t)
	src, _ := reg.Lookup("src")
	reg2 := core.NewRegistry()
	for _, d := range reg.List() {
		if d.Spec.Name == "src" {
			continue
		}
		if err := reg2.Add(d); err != nil {
			t.Fatal(err)
		}
	}
	src.Spec.NoIsolate = "it holds a listener the parent must keep"
	if err := reg2.Add(src); err != nil {
		t.Fatal(err)
	}
	reg2.SetPluginLoader(func(string) (core.Definition, error) { d, _ := reg.Lookup("flv2rtp"); return d, nil })
	return reg2
}

// TestIsolateRefused: validate refuses isolate = true on a stage whose spec
// says it cannot be isolated (with its reason, at its position), on a
// plugin, and where the program has no isolator; and a wrong value.
func TestIsolateRefused(t *testing.T) {
	core.SetIsolator(nil)
	reg := isolateRegistry(t)
	text := isolatePipeline
	mid := strings.Replace(text, "%s", `use = "av2flv"`, 1)
	// av2flv → rtpsink is a kind error too; what matters is the isolate lines.
	_, err := host.Load("f.toml", ".", []byte(mid), nil, reg)
	got := err.Error()
	for _, want := range []string{
		`f.toml: pipeline "p" stage 1 (src): isolate: src cannot run isolated: it holds a listener the parent must keep`,
		`f.toml: pipeline "p" stage 2 (av2flv): isolate: isolate is not available in this program`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("problems lack %q:\n%s", want, got)
		}
	}

	plug := strings.Replace(text, "%s", `plugin = "/bin/p"`, 1)
	_, err = host.Load("f.toml", ".", []byte(plug), nil, reg)
	if want := `isolate: a plugin runs in a process of its own already`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("plugin with isolate: got %v, want %q", err, want)
	}

	bad := strings.Replace(strings.Replace(text, "%s", `use = "flv2rtp"`, 1), "isolate = true\n  [[pipeline.stage]]\n  use = \"rtpsink\"", "isolate = 1\n  [[pipeline.stage]]\n  use = \"rtpsink\"", 1)
	_, err = host.Load("f.toml", ".", []byte(bad), nil, reg)
	if want := `stage 2: isolate: 1 is not true or false`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("isolate = 1: got %v, want %q", err, want)
	}
}

// TestIsolateSwapsDefinition: with an isolator installed, an isolate = true
// built-in gets the isolator's definition; one without keeps its own.
func TestIsolateSwapsDefinition(t *testing.T) {
	var isolated []string
	core.SetIsolator(func(d core.Definition) (core.Definition, error) {
		isolated = append(isolated, d.Spec.Name)
		d.Spec.Summary = "isolated"
		return d, nil
	})
	t.Cleanup(func() { core.SetIsolator(nil) })
	text := strings.Replace(strings.Replace(isolatePipeline, "%s", `use = "av2flv"`, 1), "  isolate = true\n", "", 1)
	text = strings.Replace(text, `use = "rtpsink"`, `use = "flv2rtp"`+"\n  [[pipeline.stage]]\n  use = \"rtpsink\"", 1)
	f, err := host.Load("f.toml", ".", []byte(text), nil, testRegistry(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st := f.Pipelines[0].Stages
	if len(isolated) != 1 || isolated[0] != "av2flv" || st[1].Def.Spec.Summary != "isolated" || st[0].Def.Spec.Summary == "isolated" {
		t.Errorf("isolated %v; stage summaries %q, %q", isolated, st[0].Def.Spec.Summary, st[1].Def.Spec.Summary)
	}
}
