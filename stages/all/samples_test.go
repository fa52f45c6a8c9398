package all

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/host"
)

// TestSamples: every built-in stage's spec carries a sample, and the sample,
// put between the other stages' samples its kinds need (a source before it,
// a sink after it), is a pipeline file `mediapipe validate` accepts.
func TestSamples(t *testing.T) {
	defs := core.Default.List()
	if len(defs) == 0 {
		t.Fatal("no stage is registered")
	}
	for _, def := range defs {
		spec := def.Spec
		t.Run(spec.Name, func(t *testing.T) {
			if strings.TrimSpace(spec.Sample) == "" {
				t.Fatal("spec has no Sample")
			}
			before := chain(t, defs, core.KindNone, spec.In)
			after := chain(t, defs, spec.Out, core.KindNone)
			var doc strings.Builder
			doc.WriteString("[[pipeline]]\nname = \"sample\"\n")
			for _, d := range before {
				doc.WriteString("\n" + d.Spec.Sample)
			}
			doc.WriteString("\n" + spec.Sample)
			for _, d := range after {
				doc.WriteString("\n" + d.Spec.Sample)
			}
			f, err := validate(t, doc.String())
			if err != nil {
				t.Fatalf("sample does not validate:\n%v\n--- pipeline file:\n%s", err, doc.String())
			}
			defer f.Close()
			if len(f.Pipelines) != 1 {
				t.Fatalf("sample makes %d pipelines, want 1", len(f.Pipelines))
			}
			stages := f.Pipelines[0].Stages
			if want := len(before) + 1 + len(after); len(stages) != want {
				t.Fatalf("pipeline has %d stages, want %d: the sample must hold exactly one [[pipeline.stage]] block", len(stages), want)
			}
			if use := stages[len(before)].Use; use != spec.Name {
				t.Fatalf("sample uses %q", use)
			}
		})
	}
}

// validate writes doc to a pipeline file and loads it as `mediapipe
// validate` does; the caller closes the result.
func validate(t *testing.T, doc string) (*host.File, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pipeline.toml")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return host.LoadFile(path, core.Default)
}

// chain returns the fewest stages with samples, first by name among equals,
// that take kind from to kind to: from none, the first is a source; to none, the last
// is a sink. It is empty when from and to are both none or equal.
func chain(t *testing.T, defs []core.Definition, from, to core.Kind) []core.Definition {
	t.Helper()
	if from == to {
		return nil
	}
	// Breadth-first over kinds; via[k] is the path that first reached k.
	via := map[core.Kind][]core.Definition{from: nil}
	queue := []core.Kind{from}
	for len(queue) > 0 {
		k := queue[0]
		queue = queue[1:]
		for _, d := range defs {
			if d.Spec.In != k || strings.TrimSpace(d.Spec.Sample) == "" {
				continue // a stage without a sample fails its own subtest
			}
			if _, seen := via[d.Spec.Out]; seen {
				continue
			}
			path := append(append([]core.Definition(nil), via[k]...), d)
			if d.Spec.Out == to {
				return path
			}
			via[d.Spec.Out] = path
			queue = append(queue, d.Spec.Out)
		}
	}
	t.Fatalf("no chain of registered stages takes %s to %s", from, to)
	return nil
}
