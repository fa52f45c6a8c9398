package host_test

import (
	"strings"
	"testing"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/host"
)

// branchRegistry is testRegistry with a stage passing flv on, so branches
// can chain and loop.
func branchRegistry(t *testing.T) *core.Registry {
	reg := testRegistry(t)
	if err := reg.Add(core.Define(core.Spec{Name: "flvpass", Summary: "flv→flv", In: core.KindFLV, Out: core.KindFLV},
		func(c *midConfig, env *core.Env) (core.Stage, error) { return passStage{}, nil })); err != nil {
		t.Fatal(err)
	}
	return reg
}

// edgeWithID is a pipeline "edge" src → av2flv (id "tagged") → flvsink.
const edgeWithID = "[[pipeline]]\nname = \"edge\"\n[[pipeline.stage]]\nuse = \"src\"\nlisten = \"l\"\n[[pipeline.stage]]\nuse = \"av2flv\"\nid = \"tagged\"\n[[pipeline.stage]]\nuse = \"flvsink\"\nlisten = \"x\"\n"

// branch is a pipeline named name, from from, with stages (use = …, one a line).
func branch(name, from string, stages ...string) string {
	var b strings.Builder
	b.WriteString("[[pipeline]]\nname = \"" + name + "\"\nfrom = \"" + from + "\"\n")
	for _, s := range stages {
		b.WriteString("[[pipeline.stage]]\n" + strings.ReplaceAll(s, "; ", "\n") + "\n")
	}
	return b.String()
}

func TestBranchFileLoads(t *testing.T) {
	file := edgeWithID +
		branch("archive", "tagged", `use = "flvsink"; listen = "a"`) +
		branch("more", "tagged", `use = "flvpass"; id = "again"`, `use = "flvsink"; listen = "b"`) +
		branch("deeper", "again", `use = "flv2rtp"`, `use = "rtpsink"; listen = "c"`)
	f, err := host.Load("t.toml", ".", []byte(file), nil, branchRegistry(t))
	if err != nil {
		t.Fatalf("good branch file refused:\n%v", err)
	}
	defer f.Close()
	pc, sc := f.Tapped(f.Pipelines[3])
	if pc != f.Pipelines[2] || sc != f.Pipelines[2].Stages[0] {
		t.Fatalf("deeper taps %v stage %v, want more's flvpass", pc, sc)
	}
}

func TestBranchProblems(t *testing.T) {
	for _, tc := range []problemCase{
		{"unknown id", edgeWithID + branch("archive", "repaired", `use = "flvsink"; listen = "a"`), nil,
			[]string{`t.toml: pipeline "archive": from: no stage has id "repaired" (ids in the file: tagged)`}},
		{"duplicate id", edgeWithID + branch("archive", "tagged", `use = "flvpass"; id = "tagged"`, `use = "flvsink"; listen = "a"`), nil,
			[]string{`t.toml: pipeline "archive" stage 1 (flvpass): id: "tagged" is already the id of pipeline "edge" stage 2 (av2flv); ids are unique in the file`}},
		{"a pipeline tapping itself", branch("loop", "me", `use = "flvpass"; id = "me"`, `use = "flvsink"; listen = "a"`), nil,
			[]string{`t.toml: pipeline "loop": from: "me" makes a cycle (loop → loop): a pipeline cannot receive its own output`}},
		{"a cycle through two pipelines",
			branch("a", "bid", `use = "flvpass"; id = "aid"`, `use = "flvsink"; listen = "a"`) +
				branch("b", "aid", `use = "flvpass"; id = "bid"`, `use = "flvsink"; listen = "b"`), nil,
			[]string{
				`t.toml: pipeline "a": from: "bid" makes a cycle (a → b → a): a pipeline cannot receive its own output`,
				`t.toml: pipeline "b": from: "aid" makes a cycle (b → a → b): a pipeline cannot receive its own output`,
			}},
		{"kind mismatch across the tap", edgeWithID + branch("relay", "tagged", `use = "rtpsink"; listen = "a"`), nil,
			[]string{`t.toml: pipeline "relay" stage 1 (rtpsink): takes rtp input but from = "tagged" is pipeline "edge" stage 2 (av2flv), which outputs flv`}},
		{"a source first in a branch", edgeWithID + branch("archive", "tagged", `use = "src"; listen = "m"`, `use = "av2flv"`, `use = "flvsink"; listen = "a"`), nil,
			[]string{`t.toml: pipeline "archive" stage 1 (src): src is a source, but this pipeline's from gives its first stage the tapped stage's output: start with a stage that takes it`}},
		{"tapping a sink", strings.Replace(edgeWithID, "listen = \"x\"\n", "listen = \"x\"\nid = \"end\"\n", 1) + branch("archive", "end", `use = "flvsink"; listen = "a"`), nil,
			[]string{`t.toml: pipeline "archive": from: "end" is pipeline "edge" stage 3 (flvsink), a sink: it has no output to branch off`}},
		{"id and from given empty", strings.Replace(edgeWithID, `id = "tagged"`, `id = ""`, 1) + branch("archive", "", `use = "flvsink"; listen = "a"`), nil,
			[]string{
				`t.toml: pipeline "edge" stage 2: id: must be a name such as "repaired"`,
				`t.toml: pipeline "archive": from: must be the id of a stage in another pipeline, such as "repaired"`,
				`t.toml: pipeline "archive" stage 1 (flvsink): the first stage must be a source, but flvsink takes flv input`,
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := host.Load("t.toml", "/tmp", []byte(tc.file), tc.env, branchRegistry(t))
			if err == nil {
				t.Fatalf("no problems reported, want %q", tc.want)
			}
			got := strings.Split(err.Error(), "\n")
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("problems:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(tc.want, "\n     "))
			}
		})
	}
}
