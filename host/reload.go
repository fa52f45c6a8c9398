package host

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
)

// A reload re-reads the pipeline file the process runs and applies the
// difference, pipeline by pipeline: a pipeline whose definition did not
// change keeps running untouched (its streams, viewers, connections and
// recordings go on); one that changed only in parameters its stages apply
// live is changed in place; added pipelines start, removed ones stop as at
// shutdown, and the others restart — with every pipeline that branches off
// one that restarts, since its tap ends with it. A file with any problem is
// refused whole, and nothing running is touched.

// ErrReloadRefused wraps the problems of a file a reload refused.
var ErrReloadRefused = errors.New("reload refused: the file has problems; the running pipelines are untouched")

// ErrNoReload is what Reload returns when the runtime has no file to
// re-read, or is not running.
var ErrNoReload = errors.New("reload: not available")

// ReloadResult says what a reload did, by pipeline name.
type ReloadResult struct {
	Added     []string `json:"added"`
	Removed   []string `json:"removed"`
	Restarted []string `json:"restarted"`
	// Changed lists the stages changed in place and the parameters applied,
	// as "PIPELINE stage N (NAME): key, key".
	Changed   []string `json:"changed"`
	Unchanged []string `json:"unchanged"`
	// Errors are pipelines that could not start (a port in use, say):
	// they are not running; the next reload tries again.
	Errors []string `json:"errors,omitempty"`
	// Problems are the file's problems when it was refused, one line each
	// as validate prints them.
	Problems []string `json:"problems,omitempty"`
}

type reloadRequest struct {
	file  *File
	reply chan *ReloadResult
}

// Reload re-reads the file (Options.Reload) and applies it. A file with
// problems returns an error wrapping ErrReloadRefused and the problems in
// the result; pipelines that could not start return an error too, with the
// rest of the reload applied.
func (rt *Runtime) Reload(ctx context.Context) (*ReloadResult, error) {
	if rt.opts.Reload == nil {
		return nil, fmt.Errorf("%w: the runtime was built without a file to re-read", ErrNoReload)
	}
	rt.reloadMu.Lock()
	defer rt.reloadMu.Unlock()
	f, err := rt.opts.Reload()
	if err != nil {
		rt.Metrics.Reload("refused").Inc()
		rt.Metrics.ReloadOK.Set(0)
		res := &ReloadResult{}
		var probs Problems
		if errors.As(err, &probs) {
			for _, p := range probs {
				res.Problems = append(res.Problems, p.String())
				rt.log.Error("reload: " + p.String())
			}
		} else {
			res.Problems = []string{err.Error()}
			rt.log.Error("reload: "+err.Error(), "err", err)
		}
		rt.log.Error("reload refused: the running pipelines are untouched", "problems", len(res.Problems))
		return res, fmt.Errorf("%w: %w", ErrReloadRefused, err)
	}
	req := &reloadRequest{file: f, reply: make(chan *ReloadResult, 1)}
	select {
	case rt.reloads <- req:
	case <-rt.stop:
		f.Close()
		return nil, fmt.Errorf("%w: the pipelines are stopping", ErrNoReload)
	case <-ctx.Done():
		f.Close()
		return nil, fmt.Errorf("reload: %w", ctx.Err())
	}
	res := <-req.reply // Run answers every request it takes
	if len(res.Errors) > 0 {
		return res, fmt.Errorf("reload: %s", strings.Join(res.Errors, "; "))
	}
	return res, nil
}

// stageChange is a stage of a running pipeline whose live parameters changed.
type stageChange struct {
	rs   *RunningStage
	next *StageConfig
	keys []string
}

// reloadPlan is the difference between the running pipelines and a file.
type reloadPlan struct {
	keep    map[string]*Pipeline       // running pipelines the file keeps, changed in place or not
	changes map[string][]stageChange   // their in-place changes
	start   map[string]*PipelineConfig // added or restarted, from the new file
	stop    []*Pipeline                // removed or restarted
	removed map[string]bool
}

// plan compares the running pipelines with f.
func (rt *Runtime) plan(f *File) *reloadPlan {
	pl := &reloadPlan{keep: map[string]*Pipeline{}, changes: map[string][]stageChange{},
		start: map[string]*PipelineConfig{}, removed: map[string]bool{}}
	running := map[string]*Pipeline{}
	for _, p := range rt.Pipelines {
		running[p.Name] = p
	}
	for _, pc := range f.Pipelines {
		p, ok := running[pc.Name]
		if !ok {
			pl.start[pc.Name] = pc
			continue
		}
		changes, restart := diffPipeline(p, pc)
		if restart {
			pl.start[pc.Name] = pc
			continue
		}
		pl.keep[pc.Name] = p
		if len(changes) > 0 {
			pl.changes[pc.Name] = changes
		}
	}
	for _, p := range rt.Pipelines {
		if _, kept := pl.keep[p.Name]; !kept {
			pl.stop = append(pl.stop, p)
			if _, again := pl.start[p.Name]; !again {
				pl.removed[p.Name] = true
			}
		}
	}
	return pl
}

// restart moves running pipeline name from kept to restarted with its
// definition in f.
func (pl *reloadPlan) restart(name string, f *File) {
	p := pl.keep[name]
	delete(pl.keep, name)
	delete(pl.changes, name)
	pl.start[name] = f.pipeline(name)
	pl.stop = append(pl.stop, p)
}

func (f *File) pipeline(name string) *PipelineConfig {
	for _, pc := range f.Pipelines {
		if pc.Name == name {
			return pc
		}
	}
	return nil
}

// diffPipeline compares running p with its new definition: the stages
// whose live parameters alone changed, or restart when anything else did.
func diffPipeline(p *Pipeline, next *PipelineConfig) (changes []stageChange, restart bool) {
	cur := p.config
	if cur.Queue != next.Queue || cur.From != next.From || len(cur.Stages) != len(next.Stages) {
		return nil, true
	}
	for i, sc := range cur.Stages {
		keys, restart := diffStage(sc, next.Stages[i])
		if restart {
			return nil, true
		}
		if len(keys) > 0 {
			changes = append(changes, stageChange{rs: p.Stages[i], next: next.Stages[i], keys: keys})
		}
	}
	return changes, false
}

// diffStage returns the parameters that differ between cur and next when
// all of them are live, or restart when the stage must be built again.
func diffStage(cur, next *StageConfig) (live []string, restart bool) {
	if cur.Use != next.Use || cur.Plugin != next.Plugin || cur.ID != next.ID || cur.Isolate != next.Isolate {
		return nil, true
	}
	keys := map[string]bool{}
	for k := range cur.Params {
		keys[k] = true
	}
	for k := range next.Params {
		keys[k] = true
	}
	for _, k := range sortedKeys(keys) {
		if reflect.DeepEqual(cur.Params[k], next.Params[k]) {
			continue
		}
		p := cur.Def.Spec.Param(k)
		if p == nil || !p.Live || cur.Def.Reconfigure == nil {
			return nil, true
		}
		live = append(live, k)
	}
	return live, false
}

// apply makes the running pipelines those of f. Run calls it, so nothing
// else starts or stops pipelines meanwhile.
func (rt *Runtime) apply(f *File) *ReloadResult {
	res := &ReloadResult{}
	pl := rt.plan(f)

	// In place first: a stage that cannot apply its change restarts.
	for name, changes := range pl.changes {
		var applied []string
		for _, c := range changes {
			err := c.rs.Config.Def.Reconfigure(c.rs.Stage, c.next.Params)
			if err != nil {
				rt.log.Warn("reload: stage could not apply the change in place; restarting its pipeline",
					"pipeline", name, "stage", c.rs.Env.Index, "name", c.rs.Env.Name, "keys", c.keys, "err", err)
				pl.restart(name, f)
				applied = nil // the restart reports it
				break
			}
			c.rs.Config.Params = c.next.Params
			applied = append(applied, fmt.Sprintf("%s stage %d (%s): %s", name, c.rs.Env.Index, c.rs.Env.Name, strings.Join(c.keys, ", ")))
		}
		res.Changed = append(res.Changed, applied...)
	}
	sort.Strings(res.Changed)
	// A branch of a pipeline that now restarts restarts as well.
	pl.pullBranches(f)

	if err := rt.stopPipelines(pl.stop); err != nil {
		res.Errors = append(res.Errors, err.Error())
	}
	for _, p := range pl.stop {
		p.config.closeDefs()
		if pl.removed[p.Name] {
			rt.Metrics.Forget(p.Name)
		}
	}

	// Build what starts, in the file's order, and branch it off whatever
	// it taps, running or new.
	var started []*Pipeline
	for _, pc := range f.Pipelines {
		if pl.start[pc.Name] == nil {
			continue
		}
		p, err := rt.buildPipeline(f, pc)
		if err != nil {
			res.Errors = append(res.Errors, err.Error())
			continue
		}
		started = append(started, p)
	}
	kept := make([]*Pipeline, 0, len(pl.keep))
	for _, p := range rt.Pipelines {
		if pl.keep[p.Name] != nil {
			kept = append(kept, p)
		}
	}
	all := append(slices.Clone(kept), started...)
	var ok []*Pipeline
	for _, p := range started {
		if err := rt.branch(p, all); err != nil {
			res.Errors = append(res.Errors, err.Error())
			continue
		}
		ok = append(ok, p)
	}
	var opened []*Pipeline
	for _, p := range ok {
		if err := rt.open([]*Pipeline{p}); err != nil {
			res.Errors = append(res.Errors, err.Error())
			continue
		}
		opened = append(opened, p)
	}
	for _, p := range opened {
		rt.launch(p)
	}

	// What runs now, in the file's order; the file keeps the configs (and
	// plugin processes) of the pipelines left running.
	running := map[string]*Pipeline{}
	for _, p := range append(kept, opened...) {
		running[p.Name] = p
	}
	merged := &File{Path: f.Path, Dir: f.Dir, Admin: f.Admin, Log: f.Log, Hooks: f.Hooks}
	var pipes []*Pipeline
	for i, pc := range f.Pipelines {
		p := running[pc.Name]
		if p == nil {
			pc.closeDefs() // did not start: the next reload builds it again
			continue
		}
		if pl.keep[pc.Name] != nil {
			pc.closeDefs() // the running pipeline keeps its own
			p.config.Index = i + 1
			pc = p.config
		}
		merged.Pipelines = append(merged.Pipelines, pc)
		pipes = append(pipes, p)
	}
	old := rt.Config()
	rt.mu.Lock()
	rt.File, rt.Pipelines = merged, pipes
	rt.mu.Unlock()

	if err := rt.reloadAdmin(old.Admin, f.Admin); err != nil {
		res.Errors = append(res.Errors, err.Error())
		// The old server serves on: the file's table is not what runs,
		// so the next reload of the same file tries again.
		rt.mu.Lock()
		rt.File.Admin = old.Admin
		rt.mu.Unlock()
	}
	rt.reloadHooks(f.Hooks)
	if rt.opts.LogChanged != nil {
		rt.opts.LogChanged(f.Log)
	}

	for _, pc := range f.Pipelines {
		switch {
		case pl.start[pc.Name] == nil && len(pl.changes[pc.Name]) == 0:
			res.Unchanged = append(res.Unchanged, pc.Name)
		case pl.start[pc.Name] == nil:
		case slices.ContainsFunc(pl.stop, func(p *Pipeline) bool { return p.Name == pc.Name }):
			res.Restarted = append(res.Restarted, pc.Name)
		default:
			res.Added = append(res.Added, pc.Name)
		}
	}
	for name := range pl.removed {
		res.Removed = append(res.Removed, name)
	}
	sort.Strings(res.Removed)
	rt.report(res)
	return res
}

// pullBranches restarts every kept branch whose tapped pipeline restarts.
func (pl *reloadPlan) pullBranches(f *File) {
	ids := stageIDs(f.Pipelines)
	for more := true; more; {
		more = false
		for name, p := range pl.keep {
			if p.config.From == "" {
				continue
			}
			if t, ok := ids[p.config.From]; ok && pl.keep[t.pc.Name] != nil {
				continue
			}
			pl.restart(name, f)
			more = true
		}
	}
}

// report logs the one line a reload writes, counts it and sets the gauge.
func (rt *Runtime) report(res *ReloadResult) {
	args := []any{"added", res.Added, "removed", res.Removed, "restarted", res.Restarted,
		"changed_in_place", res.Changed, "unchanged", len(res.Unchanged)}
	if len(res.Errors) > 0 {
		rt.Metrics.Reload("failed").Inc()
		rt.Metrics.ReloadOK.Set(0)
		rt.log.Error("reloaded with errors", append(args, "errors", res.Errors)...)
		return
	}
	rt.Metrics.Reload("ok").Inc()
	rt.Metrics.ReloadOK.Set(1)
	rt.log.Info("reloaded", args...)
}

// reloadAdmin applies a changed [admin] table: a new token or
// metrics_public on the same address takes effect on the running server; a
// new address starts the server anew, and the old one closes in the
// background (the reload may be its own request).
func (rt *Runtime) reloadAdmin(old, next *AdminConfig) error {
	if reflect.DeepEqual(old, next) {
		return nil
	}
	if rt.admin != nil && old != nil && next != nil && old.Listen == next.Listen {
		rt.admin.cfg.Store(next)
		return nil
	}
	var a *admin
	if next != nil {
		var err error
		if a, err = rt.startAdmin(next); err != nil {
			return err // the old one serves on
		}
	}
	prev := rt.admin
	rt.admin = a
	go prev.close()
	return nil
}

// closeDefs frees what resolving the pipeline's stages took (plugin
// processes asked for their specs).
func (pc *PipelineConfig) closeDefs() {
	for _, sc := range pc.Stages {
		if sc.Def.Close != nil {
			sc.Def.Close()
		}
	}
}
