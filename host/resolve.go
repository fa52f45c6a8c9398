package host

import (
	"fmt"
	"sort"

	"github.com/mediapipe/mediapipe/core"
)

// Resolve gives every stage of f its definition from reg, starting plugin
// processes to ask their specs, and checks each stage's parameters and the
// kinds between neighbours. It returns the problems it finds; stages that
// Parse already found without use or plugin are left alone.
func Resolve(f *File, reg *core.Registry) Problems {
	ps := &problems{file: f.Path}
	// slots holds every pipeline's stages in file order, nil where one did
	// not resolve, so order and kind checks still run around a broken one.
	slots := make([][]*StageConfig, len(f.Pipelines))
	resolved := map[*StageConfig]bool{}
	for i, pc := range f.Pipelines {
		slots[i] = make([]*StageConfig, len(pc.Stages))
		for j, sc := range pc.Stages {
			msgs, ok := resolveStage(sc, reg, f.Dir)
			for _, msg := range msgs {
				ps.at(pc, sc.Index, sc.Label(), msg)
			}
			if ok {
				slots[i][j] = sc
				resolved[sc] = true
			}
		}
	}
	for i, pc := range f.Pipelines {
		probs := checkKinds(slots[i], pc.From != "")
		if pc.From != "" && len(slots[i]) > 0 {
			tappedPC, tapped := f.Tapped(pc)
			if !resolved[tapped] {
				tapped = nil
			}
			probs = append(probs, checkTap(pc, slots[i][0], tappedPC, tapped)...)
		}
		for _, p := range probs {
			ps.at(pc, p.Stage, p.StageName, p.Msg)
		}
	}
	return ps.list
}

// resolveStage looks sc up (a built-in, or a plugin started to ask its spec)
// and checks its parameters against the spec; dir is the file's directory.
// ok says whether sc has a definition the kind checks can use.
func resolveStage(sc *StageConfig, reg *core.Registry, dir string) (msgs []string, ok bool) {
	if (sc.Use == "") == (sc.Plugin == "") {
		return nil, false // Parse reported it
	}
	if sc.Use != "" {
		def, found := reg.Lookup(sc.Use)
		if !found {
			return []string{fmt.Sprintf("use: unknown stage %q (see mediapipe stages)", sc.Use)}, false
		}
		sc.Def = def
	} else {
		def, err := reg.LoadPlugin(sc.Plugin)
		if err != nil {
			return []string{err.Error()}, false
		}
		sc.Def = def
	}
	if sc.Isolate {
		if msg := isolate(sc); msg != "" {
			msgs = append(msgs, msg)
		}
	}
	check := sc.Def.Check
	if in := sc.Def.CheckIn; in != nil {
		check = func(raw map[string]any) []error { return in(raw, dir) }
	}
	errs := check(sc.Params)
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	for _, err := range errs {
		msgs = append(msgs, err.Error())
	}
	return msgs, true
}

// isolate makes sc's built-in definition run in a child process, or says
// why it cannot. The definition is kept either way, so the kind and
// parameter checks still run.
func isolate(sc *StageConfig) string {
	if sc.Plugin != "" {
		return "isolate: a plugin runs in a process of its own already; isolate is for built-in stages"
	}
	def, err := core.Isolate(sc.Def)
	if err != nil {
		return "isolate: " + err.Error()
	}
	sc.Def = def
	return ""
}

// Close stops what resolving the file started (plugin processes).
func (f *File) Close() {
	if f == nil {
		return
	}
	for _, pc := range f.Pipelines {
		for _, sc := range pc.Stages {
			if sc.Def.Close != nil {
				sc.Def.Close()
			}
		}
	}
}
