package host

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// Problem is one thing wrong with a pipeline file, placed as precisely as
// possible: file, pipeline, stage position and key (inside Msg).
type Problem struct {
	File      string
	Pipeline  string // empty for file-level problems
	Stage     int    // 1-based; 0 for pipeline- or file-level problems
	StageName string
	Msg       string
	// order places the problem among those of Parse and Resolve: 0 before
	// every pipeline, a pipeline's position in the file, afterPipelines last.
	order int
}

// afterPipelines orders the environment's problems after every pipeline's.
const afterPipelines = math.MaxInt

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	b.WriteString(": ")
	if p.Pipeline != "" {
		fmt.Fprintf(&b, "pipeline %q", p.Pipeline)
		if p.Stage > 0 {
			fmt.Fprintf(&b, " stage %d", p.Stage)
			if p.StageName != "" {
				fmt.Fprintf(&b, " (%s)", p.StageName)
			}
		}
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is a list of problems that is also an error.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// sort puts file-level problems first, then each pipeline's in file order,
// by stage, then the environment's; problems in one place keep their order.
func (ps Problems) sort() {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].order != ps[j].order {
			return ps[i].order < ps[j].order
		}
		return ps[i].Stage < ps[j].Stage
	})
}

// problems collects the problems of one file.
type problems struct {
	file string
	list Problems
}

// fileLevel adds a problem of the whole file, placed at order.
func (ps *problems) fileLevel(order int, format string, args ...any) {
	ps.list = append(ps.list, Problem{File: ps.file, Msg: fmt.Sprintf(format, args...), order: order})
}

// at adds a problem of pipeline pc, of its stage at position stage (1-based)
// unless that is 0.
func (ps *problems) at(pc *PipelineConfig, stage int, stageName, msg string) {
	ps.list = append(ps.list, Problem{File: ps.file, Pipeline: pc.Label(), Stage: stage, StageName: stageName, Msg: msg, order: pc.Index})
}
