package core

import (
	"errors"
	"fmt"
	"sort"
	"sync"
)

// Definition is a registered stage: its spec, a parameter check that builds
// nothing, and a constructor.
type Definition struct {
	Spec Spec
	// Check validates raw parameters (as decoded from the pipeline file)
	// without side effects; one error per problem, each starting with the key.
	Check func(raw map[string]any) []error
	// CheckIn, if set, is what validating a pipeline file calls instead of
	// Check, for a stage whose parameters name files: dir is the pipeline
	// file's directory, which relative paths resolve against. Define sets
	// it when the config is a DirValidator.
	CheckIn func(raw map[string]any, dir string) []error
	// Build decodes raw parameters and constructs the stage.
	Build func(raw map[string]any, env *Env) (Stage, error)
	// Reconfigure, if set, applies new parameters to a running stage that
	// Build made, in place: the host calls it on reload when only
	// parameters marked Live changed. An error (ErrNotLive among them)
	// makes the host restart the stage's pipeline instead.
	Reconfigure func(st Stage, raw map[string]any) error
	// Close, if set, frees what looking the definition up took (a plugin
	// process started to ask its spec).
	Close func()
}

// Reconfigurable is implemented by a stage whose config type is C and that
// applies the parameters marked live:"true" while it runs. Reconfigure gets
// the whole new config, validated; only live fields differ from the one the
// stage was built with. It must be safe to call while Run runs, and must not
// block on the data path.
type Reconfigurable[C any] interface {
	Reconfigure(cfg *C) error
}

// ErrNotLive is what Definition.Reconfigure returns for a stage that does
// not apply changes in place.
var ErrNotLive = errors.New("stage does not apply parameter changes in place")

// Validator is implemented by config structs with rules that span several
// fields; Validate runs after the fields are decoded.
type Validator interface {
	Validate() error
}

// DirValidator is implemented by config structs whose parameters name files
// relative to the pipeline file: validating the file calls ValidateIn with
// its directory after Validate. It may start what a file names to check it.
type DirValidator interface {
	ValidateIn(dir string) error
}

// Define makes a Definition from a spec and a constructor taking the stage's
// typed config struct C. When spec.Params is nil it is derived from C's tags.
func Define[C any](spec Spec, build func(cfg *C, env *Env) (Stage, error)) Definition {
	if spec.Params == nil {
		spec.Params = ParamsOf(new(C))
	}
	decode := func(raw map[string]any) (*C, []error) {
		cfg := new(C)
		if errs := spec.Decode(raw, cfg); len(errs) > 0 {
			return nil, errs
		}
		if v, ok := any(cfg).(Validator); ok {
			if err := v.Validate(); err != nil {
				return nil, unjoin(err)
			}
		}
		return cfg, nil
	}
	def := Definition{
		Spec: spec,
		Check: func(raw map[string]any) []error {
			_, errs := decode(raw)
			return errs
		},
		Build: func(raw map[string]any, env *Env) (Stage, error) {
			cfg, errs := decode(raw)
			if len(errs) > 0 {
				return nil, errors.Join(errs...)
			}
			return build(cfg, env)
		},
	}
	def.Reconfigure = func(st Stage, raw map[string]any) error {
		r, ok := st.(Reconfigurable[C])
		if !ok {
			return ErrNotLive
		}
		cfg, errs := decode(raw)
		if len(errs) > 0 {
			return errors.Join(errs...)
		}
		return r.Reconfigure(cfg)
	}
	if _, ok := any(new(C)).(DirValidator); ok {
		def.CheckIn = func(raw map[string]any, dir string) []error {
			cfg, errs := decode(raw)
			if len(errs) > 0 {
				return errs
			}
			if err := any(cfg).(DirValidator).ValidateIn(dir); err != nil {
				return unjoin(err)
			}
			return nil
		}
	}
	return def
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// PluginLoader turns a plugin path into a Definition, starting the plugin to
// ask its spec. The plugin bridge installs one.
type PluginLoader func(path string) (Definition, error)

// ErrPluginsUnavailable is returned for plugin = "..." stages when no plugin
// loader is installed.
var ErrPluginsUnavailable = errors.New("plugins are not available in this build")

// Registry maps stage names to definitions.
type Registry struct {
	mu      sync.RWMutex
	defs    map[string]Definition
	plugins PluginLoader
}

// NewRegistry returns an empty registry (tests assemble exactly what they need).
func NewRegistry() *Registry { return &Registry{defs: map[string]Definition{}} }

// Default is the registry built-in stages register into from init().
var Default = NewRegistry()

// Register adds a built-in stage to Default; it panics on a duplicate name,
// which is a programming error.
func Register[C any](spec Spec, build func(cfg *C, env *Env) (Stage, error)) {
	if err := Default.Add(Define(spec, build)); err != nil {
		panic(err)
	}
}

// Add registers def; a name already taken is refused.
func (r *Registry) Add(def Definition) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if def.Spec.Name == "" {
		return errors.New("stage definition without a name")
	}
	if _, dup := r.defs[def.Spec.Name]; dup {
		return fmt.Errorf("stage %q is registered twice", def.Spec.Name)
	}
	r.defs[def.Spec.Name] = def
	return nil
}

// Lookup returns the definition named name.
func (r *Registry) Lookup(name string) (Definition, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	d, ok := r.defs[name]
	return d, ok
}

// List returns every definition, sorted by name.
func (r *Registry) List() []Definition {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Definition, 0, len(r.defs))
	for _, d := range r.defs {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Spec.Name < out[j].Spec.Name })
	return out
}

// Clone returns an independent copy, plugin loader included.
func (r *Registry) Clone() *Registry {
	r.mu.RLock()
	defer r.mu.RUnlock()
	c := &Registry{defs: make(map[string]Definition, len(r.defs)), plugins: r.plugins}
	for k, v := range r.defs {
		c.defs[k] = v
	}
	return c
}

// SetPluginLoader installs the loader used for plugin = "PATH" stages.
func (r *Registry) SetPluginLoader(l PluginLoader) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.plugins = l
}

// LoadPlugin resolves a plugin path through the installed loader.
func (r *Registry) LoadPlugin(path string) (Definition, error) {
	r.mu.RLock()
	l := r.plugins
	r.mu.RUnlock()
	if l == nil {
		return Definition{}, ErrPluginsUnavailable
	}
	return l(path)
}
