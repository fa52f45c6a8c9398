package bridge

import (
	"errors"
	"fmt"
	"os"

	"github.com/mediapipe/mediapipe/core"
)

func init() { core.SetIsolator(Isolate) }

// ServeStageCommand is the hidden subcommand of the mediapipe binary that
// serves one built-in stage through the plugin SDK: `mediapipe serve-stage
// NAME`. Only the bridge starts it, with the plugin handshake in its
// environment; parameters (secrets too) come through the Open call, never the
// command line.
const ServeStageCommand = "serve-stage"

// Program is the binary an isolated stage runs in; os.Executable unless a
// test points it at a mediapipe it built.
var Program = os.Executable

// Isolate returns def with a Build that runs the stage in a child process:
// Program serving that one stage through the SDK, over the same bridge as
// plugin stages, so it is restarted with back-off and counted (restarts,
// plugin_down and plugin_died drops) like a plugin. Check stays in process:
// it is the same code the child would run.
func Isolate(def core.Definition) (core.Definition, error) { return IsolateWith(def, Options{}) }

// IsolateWith is Isolate with options.
func IsolateWith(def core.Definition, opts Options) (core.Definition, error) {
	if def.Spec.NoIsolate != "" {
		return core.Definition{}, fmt.Errorf("%s cannot run isolated: %s", def.Spec.Name, def.Spec.NoIsolate)
	}
	if def.Build == nil {
		return core.Definition{}, errors.New("isolate: the definition has no Build")
	}
	exe, err := Program()
	if err != nil {
		return core.Definition{}, fmt.Errorf("isolate: cannot find this program's binary: %w", err)
	}
	spec := def.Spec
	iso := def
	iso.Build = func(raw map[string]any, env *core.Env) (core.Stage, error) {
		// The parent decodes first so a bad parameter fails here, in one
		// line, not in a child that is restarted forever.
		if def.Check != nil {
			if errs := def.Check(raw); len(errs) > 0 {
				return nil, errors.Join(errs...)
			}
		}
		params, errs := normalize(&spec, raw)
		if len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
		s := newStage(exe, spec, params, env, opts)
		s.args = []string{ServeStageCommand, spec.Name}
		s.replayHeaders = true
		return s, nil
	}
	return iso, nil
}
