package host

import (
	"fmt"
	"strings"

	"github.com/mediapipe/mediapipe/core"
)

// A branch is a pipeline whose from names the id of a stage in another
// pipeline (the tapped stage): it has no source and receives everything
// that stage emits. The taps are edges between pipelines, kept by name, so
// a later reload can tell which pipelines a change touches.

// tap is where a stage id lives.
type tap struct {
	pc *PipelineConfig
	sc *StageConfig
}

// stageIDs maps every stage id of pipes to the first stage carrying it.
func stageIDs(pipes []*PipelineConfig) map[string]tap {
	ids := map[string]tap{}
	for _, pc := range pipes {
		for _, sc := range pc.Stages {
			if _, dup := ids[sc.ID]; sc.ID != "" && !dup {
				ids[sc.ID] = tap{pc, sc}
			}
		}
	}
	return ids
}

// Tapped returns the pipeline and stage pc's from names, or nils when pc
// has no from or it names no stage.
func (f *File) Tapped(pc *PipelineConfig) (*PipelineConfig, *StageConfig) {
	if pc.From == "" {
		return nil, nil
	}
	t, ok := stageIDs(f.Pipelines)[pc.From]
	if !ok {
		return nil, nil
	}
	return t.pc, t.sc
}

// taps reports ids used twice, a from naming no id, and froms that make a
// cycle (a pipeline receiving, directly or through others, its own output).
func (ps *problems) taps(pipes []*PipelineConfig) {
	ids := stageIDs(pipes)
	for _, pc := range pipes {
		for _, sc := range pc.Stages {
			if first, ok := ids[sc.ID]; ok && first.sc != sc {
				ps.at(pc, sc.Index, sc.Label(), fmt.Sprintf("id: %q is already the id of pipeline %q stage %d (%s); ids are unique in the file", sc.ID, first.pc.Label(), first.sc.Index, first.sc.Label()))
			}
		}
	}
	for _, pc := range pipes {
		if pc.From == "" {
			continue
		}
		if _, ok := ids[pc.From]; !ok {
			ps.at(pc, 0, "", fmt.Sprintf("from: no stage has id %q%s", pc.From, idList(ids)))
			continue
		}
		if path := tapCycle(pc, ids); path != nil {
			ps.at(pc, 0, "", fmt.Sprintf("from: %q makes a cycle (%s): a pipeline cannot receive its own output", pc.From, strings.Join(path, " → ")))
		}
	}
}

// tapCycle follows from to from starting at pc and returns the pipeline
// names around the cycle when it comes back to pc, else nil. A cycle that
// does not pass through pc is reported on its own members.
func tapCycle(pc *PipelineConfig, ids map[string]tap) []string {
	path := []string{pc.Label()}
	seen := map[*PipelineConfig]bool{pc: true}
	for cur := pc; cur.From != ""; {
		t, ok := ids[cur.From]
		if !ok {
			return nil
		}
		cur = t.pc
		path = append(path, cur.Label())
		if cur == pc {
			return path
		}
		if seen[cur] {
			return nil
		}
		seen[cur] = true
	}
	return nil
}

// idList names the ids a from may use, for a problem: " (ids: a, b)".
func idList(ids map[string]tap) string {
	if len(ids) == 0 {
		return ` (no stage has an id; give the stage to branch off id = "NAME")`
	}
	return " (ids in the file: " + strings.Join(sortedKeys(ids), ", ") + ")"
}

// checkTap checks the kinds across pc's tap: the tapped stage must have an
// output, of the kind pc's first stage takes. first and tapped are nil when
// they did not resolve (already reported).
func checkTap(pc *PipelineConfig, first *StageConfig, tappedPC *PipelineConfig, tapped *StageConfig) []Problem {
	if tapped == nil {
		return nil
	}
	out := tapped.Def.Spec.Out
	if out == core.KindNone {
		return []Problem{{Msg: fmt.Sprintf("from: %q is pipeline %q stage %d (%s), a sink: it has no output to branch off", pc.From, tappedPC.Label(), tapped.Index, tapped.Label())}}
	}
	if first == nil || first.Def.Spec.IsSource() {
		return nil // checkKinds says the source is out of place
	}
	if in := first.Def.Spec.In; in != out {
		return []Problem{{Stage: first.Index, StageName: first.Label(), Msg: fmt.Sprintf("takes %s input but from = %q is pipeline %q stage %d (%s), which outputs %s", in, pc.From, tappedPC.Label(), tapped.Index, tapped.Label(), out)}}
	}
	return nil
}
