package host

import "fmt"

// checkKinds verifies sources first, sinks last and each input kind equal to
// the previous stage's output kind. A nil slot is a stage that did not
// resolve (already reported): checks that need it are skipped, the rest run.
// A branch (from set) has no source: its first stage takes the tapped
// stage's output, which checkTap compares.
func checkKinds(slots []*StageConfig, branch bool) []Problem {
	var probs []Problem
	n := len(slots)
	for i, sc := range slots {
		if sc == nil {
			continue
		}
		spec := &sc.Def.Spec
		p := func(format string, args ...any) {
			probs = append(probs, Problem{Stage: sc.Index, StageName: sc.Label(), Msg: fmt.Sprintf(format, args...)})
		}
		if i == 0 && branch && spec.IsSource() {
			p("%s is a source, but this pipeline's from gives its first stage the tapped stage's output: start with a stage that takes it", spec.Name)
		}
		if i == 0 && !branch && !spec.IsSource() {
			p("the first stage must be a source, but %s takes %s input", spec.Name, spec.In)
		}
		if i > 0 && spec.IsSource() {
			p("%s is a source (no input) and can only be the first stage", spec.Name)
		}
		if i > 0 && !spec.IsSource() && slots[i-1] != nil {
			prev := slots[i-1]
			if !prev.Def.Spec.IsSink() && prev.Def.Spec.Out != spec.In {
				p("takes %s input but stage %d (%s) outputs %s", spec.In, prev.Index, prev.Label(), prev.Def.Spec.Out)
			}
		}
		if i < n-1 && spec.IsSink() {
			if next := slots[i+1]; next != nil {
				p("%s is a sink (no output) and must be the last stage, but stage %d (%s) follows", spec.Name, next.Index, next.Label())
			} else {
				p("%s is a sink (no output) and must be the last stage, but stage %d follows", spec.Name, i+2)
			}
		}
		if i == n-1 && !spec.IsSink() {
			p("the last stage must be a sink, but %s outputs %s that nothing consumes", spec.Name, spec.Out)
		}
	}
	return probs
}
