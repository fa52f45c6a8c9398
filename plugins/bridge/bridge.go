// Package bridge runs external stage, SR backend and policy plugins
// (hashicorp go-plugin over gRPC) so the pipeline cannot tell them from
// built-ins.
//
// Importing it enables plugin = "PATH" stages, backend = "plugin" and
// policy = "plugin": its init installs Load as core.Default's plugin loader,
// OpenSRBackend as core/sr's plugin opener and OpenPolicy as core/control's.
package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/control"
	"github.com/mediapipe/mediapipe/core/sr"
	"github.com/mediapipe/mediapipe/plugins/internal/pluginpb"
	"github.com/mediapipe/mediapipe/plugins/internal/shared"
)

func init() {
	core.Default.SetPluginLoader(Load)
	sr.SetPluginOpener(OpenSRBackend)
	control.SetPluginOpener(OpenPolicy)
}

// Options tune how a plugin stage is run.
type Options struct {
	// MaxBatch is the most packets per message either way (default 64).
	// Whatever is waiting is sent at once, so latency stays low at any size.
	MaxBatch int
	// Log receives lifecycle lines and the plugin's standard error while
	// loading (default slog.Default()); a built stage logs to its env.Log.
	Log *slog.Logger
	// RestartGrace is how long streams a plugin made itself stay open
	// downstream after the plugin died, for its restarted process to start
	// them again under the same name, which re-attaches them: viewers of a
	// renamed stream stay connected across a crash. Default
	// DefaultRestartGrace; negative: end them at once.
	RestartGrace time.Duration
}

func (o Options) log() *slog.Logger {
	if o.Log != nil {
		return o.Log
	}
	return slog.Default()
}

// Load starts the plugin at path to ask its spec and returns a Definition
// whose Check validates parameters against that spec and then lets the
// plugin run its own checks (its config's Validate), and whose Build makes a
// stage that runs the plugin in a process of its own. The process started to
// ask stays up for Check until Build or Close. Every error is one line
// naming path.
func Load(path string) (core.Definition, error) { return LoadWith(path, Options{}) }

// LoadWith is Load with options.
func LoadWith(path string, opts Options) (core.Definition, error) {
	p, err := start(path, shared.KindStage, opts.log())
	if err != nil {
		return core.Definition{}, err
	}
	spec := p.spec
	d := &describer{path: path, log: opts.log(), procSlot: procSlot{proc: p}}
	return core.Definition{
		Spec: spec,
		Check: func(raw map[string]any) []error {
			params, errs := normalize(&spec, raw)
			if len(errs) > 0 {
				return errs
			}
			return d.check(params)
		},
		Build: func(raw map[string]any, env *core.Env) (core.Stage, error) {
			params, errs := normalize(&spec, raw)
			if len(errs) > 0 {
				return nil, errors.Join(errs...)
			}
			d.swap(nil) // the stage starts its own process
			return newStage(path, spec, params, env, opts), nil
		},
		Close: func() { d.swap(nil) },
	}, nil
}

// describer is the process started to ask a plugin's spec, kept for Check.
type describer struct {
	path string
	log  *slog.Logger
	procSlot
}

func (d *describer) check(params map[string]*pluginpb.Value) []error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.proc == nil || d.proc.exited() {
		if d.proc != nil {
			d.proc.kill()
		}
		p, err := start(d.path, shared.KindStage, d.log)
		if err != nil {
			return []error{err}
		}
		d.proc = p
	}
	ctx, cancel := context.WithTimeout(context.Background(), describeTimeout)
	defer cancel()
	resp, err := d.proc.stage.Check(ctx, &pluginpb.OpenRequest{Params: params})
	if status.Code(err) == codes.Unimplemented {
		return nil
	}
	if err != nil {
		return []error{fmt.Errorf("plugin %s: check: %s", d.path, statusMessage(err))}
	}
	var errs []error
	for _, e := range resp.Errors {
		errs = append(errs, errors.New(e))
	}
	return errs
}

// normalize checks raw against spec and converts the given values for the
// wire; the plugin applies its own defaults.
func normalize(spec *core.Spec, raw map[string]any) (map[string]*pluginpb.Value, []error) {
	raw = withoutPluginKey(raw)
	if errs := spec.Decode(raw, nil); len(errs) > 0 {
		return nil, errs
	}
	out := make(map[string]*pluginpb.Value, len(raw))
	var errs []error
	for k, r := range raw {
		v, err := spec.Param(k).Normalize(r)
		if err == nil {
			out[k], err = shared.ValueToPB(v)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k, err))
		}
	}
	return out, errs
}

// withoutPluginKey drops the "plugin" key naming the program, should the
// caller pass the stage's whole table.
func withoutPluginKey(raw map[string]any) map[string]any {
	if _, ok := raw["plugin"]; !ok {
		return raw
	}
	c := make(map[string]any, len(raw))
	for k, v := range raw {
		if k != "plugin" {
			c[k] = v
		}
	}
	return c
}

// Plugin is one plugin program found by Scan.
type Plugin struct {
	Path string
	Spec core.Spec // an SR backend's has a name and a summary only
}

// Found is what Scan finds in a directory.
type Found struct {
	Stages     []Plugin // stage plugins, by name
	SRBackends []Plugin // SR backend plugins, by name
	Policies   []Plugin // transmission-control policy plugins, by name
	Problems   []error  // one line for each executable that is no usable plugin
}

// Scan starts every executable regular file in dir once to ask what it
// serves and its spec, then stops it. The error is for a directory that
// cannot be read; a file that is not a plugin is one of Found.Problems.
func Scan(dir string) (Found, error) {
	var f Found
	paths, err := executables(dir)
	if err != nil {
		return f, err
	}
	for _, path := range paths {
		p, err := start(path, kindAny, slog.Default())
		if err != nil {
			f.Problems = append(f.Problems, err)
			continue
		}
		p.kill()
		found := Plugin{Path: path, Spec: p.spec}
		switch p.kind {
		case shared.KindSR:
			f.SRBackends = append(f.SRBackends, found)
		case shared.KindPolicy:
			f.Policies = append(f.Policies, found)
		default:
			f.Stages = append(f.Stages, found)
		}
	}
	for _, list := range [][]Plugin{f.Stages, f.SRBackends, f.Policies} {
		sort.Slice(list, func(i, j int) bool { return list[i].Spec.Name < list[j].Spec.Name })
	}
	return f, nil
}

// executables lists the executable regular files in dir.
func executables(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("plugin directory %s: %w", dir, err)
	}
	var paths []string
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		info, err := os.Stat(path) // a symlink to a plugin counts
		if err != nil || !info.Mode().IsRegular() || info.Mode().Perm()&0o111 == 0 {
			continue
		}
		paths = append(paths, path)
	}
	return paths, nil
}
