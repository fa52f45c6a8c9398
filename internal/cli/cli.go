// Package cli implements the mediapipe command: run, validate, stages,
// version. main.go only hands it the arguments.
package cli

import (
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mediapipe/mediapipe"
	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/host"
	"github.com/mediapipe/mediapipe/internal/procs"
	"github.com/mediapipe/mediapipe/plugins/bridge"
)

// Version is set at build time with -ldflags "-X .../internal/cli.Version=v1.2.3".
var Version = "dev"

// Extra commands linked in by other packages (bench), by name.
var Extra = map[string]Command{}

// Command is one subcommand.
type Command struct {
	Summary string
	Run     func(args []string, stdout, stderr io.Writer) int
}

const usage = `mediapipe — plugin-based media pipelines (RTMP → RTP/UDP → HTTP-FLV relay)

Usage:
  mediapipe run [FILE]        run the pipelines in FILE (default: pipeline.example.toml
                              in . or beside the binary, else the built-in example);
                              SIGHUP or POST /api/reload re-reads FILE, --watch on change
  mediapipe validate FILE...  check FILEs; print every problem; exit 1 if any
  mediapipe stages            list stages with kinds and parameters (--markdown for docs)
  mediapipe version           print the version
%s
Run 'mediapipe COMMAND --help' for a command's flags.
`

// Main runs the command line and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	defer bridge.Shutdown() // no plugin process outlives the command
	if len(args) == 0 {
		fmt.Fprintf(stderr, usage, extraUsage())
		return 2
	}
	switch args[0] {
	case "run":
		return runCmd(args[1:], stdout, stderr)
	case "validate":
		return validateCmd(args[1:], stdout, stderr)
	case "stages":
		return stagesCmd(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		if len(args) > 1 {
			fs := newFlags("version", "version", stderr)
			if err := fs.Parse(args[1:]); err != nil {
				return FlagExit(err)
			}
		}
		fmt.Fprintln(stdout, "mediapipe", version())
		return 0
	case "help", "-h", "--help":
		fmt.Fprintf(stdout, usage, extraUsage())
		return 0
	}
	if c, ok := Extra[args[0]]; ok {
		return c.Run(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "mediapipe: unknown command %q\n\n", args[0])
	fmt.Fprintf(stderr, usage, extraUsage())
	return 2
}

func extraUsage() string {
	var b strings.Builder
	for name, c := range Extra {
		fmt.Fprintf(&b, "  mediapipe %-20s %s\n", name, c.Summary)
	}
	return b.String()
}

func version() string {
	if Version != "dev" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return Version
}

var descriptions = map[string]string{
	"run": `Runs every pipeline in FILE until SIGINT or SIGTERM, then closes the
listeners, lets queued packets drain, finishes recordings and exits 0.
SIGHUP, POST /api/reload on the admin address, or (with --watch) a change
to FILE reloads it: a file with problems is refused whole; unchanged
pipelines run on untouched, live parameters are applied in place, added
pipelines start, removed ones stop, changed ones restart.
Without FILE it uses pipeline.example.toml from the working directory or
beside the binary, else the built-in copy. MEDIAPIPE_… environment
variables override keys of the file (see README).`,
	"validate": `Checks each FILE without running anything: TOML syntax, stage names,
parameters (unknown, mistyped, out of range, missing), kinds between
neighbouring stages, plugins (started to ask their spec). Prints one line
per problem and exits 1 if there is any.`,
	"version": `Prints the version of this build.`,
	"stages": `Lists every built-in stage with its input and output kinds and its
parameters (type, default, range, meaning), then the plugins found in the
plugin directory.`,
}

func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: mediapipe %s\n\n", synopsis)
		if d := descriptions[name]; d != "" {
			fmt.Fprintf(stderr, "%s\n\n", d)
		}
		fs.PrintDefaults()
	}
	return fs
}

// resolveRunFile picks the file `run` uses when none is given.
func resolveRunFile() (path string, data []byte, err error) {
	name := mediapipe.ExamplePipelineName
	if _, err := os.Stat(name); err == nil {
		return name, nil, nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), name)
		if _, err := os.Stat(p); err == nil {
			return p, nil, nil
		}
	}
	return "(built-in) " + name, mediapipe.ExamplePipeline, nil
}

func load(path string, data []byte) (*host.File, error) {
	if data != nil {
		wd, _ := os.Getwd()
		return host.Load(path, wd, data, os.Environ(), core.Default)
	}
	return host.LoadFile(path, core.Default)
}

func printProblems(w io.Writer, err error) {
	var probs host.Problems
	if errors.As(err, &probs) {
		for _, p := range probs {
			fmt.Fprintln(w, p.String())
		}
		return
	}
	fmt.Fprintln(w, err)
}

func runCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("run", "run [FILE]", stderr)
	level := fs.String("log-level", "", "override the file's log level: debug, info, warn, error")
	watch := fs.Bool("watch", false, "reload when FILE changes (as SIGHUP and POST /api/reload do)")
	files, err := parseArgs(fs, args)
	if err != nil {
		return FlagExit(err)
	}
	// From here on SIGHUP means reload, never the default of dying, even
	// before the pipelines run (it then waits for them).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if len(files) > 1 {
		fmt.Fprintln(stderr, "mediapipe run: at most one FILE")
		return 2
	}
	if *level != "" {
		if err := host.CheckLogLevel(*level); err != nil {
			fmt.Fprintf(stderr, "mediapipe run: --log-level %v\n", err)
			return 2
		}
	}
	var path string
	var data []byte
	if len(files) == 1 {
		path = files[0]
	} else {
		path, data, _ = resolveRunFile()
	}
	f, err := load(path, data)
	if err != nil {
		printProblems(stderr, err)
		return 1
	}
	if *level != "" {
		f.Log.Level = *level
	}
	var lv slog.LevelVar
	log := newLogger(stderr, f.Log, &lv)
	slog.SetDefault(log)
	format := f.Log.Format
	rt, err := host.Build(f, host.Options{
		Logger: log,
		Reload: func() (*host.File, error) { return load(path, data) },
		LogChanged: func(c host.LogConfig) {
			if *level == "" { // --log-level wins over the file
				_ = lv.UnmarshalText([]byte(c.Level))
			}
			if c.Format != format {
				log.Warn("reload: log.format takes effect when the process restarts", "running", format, "file", c.Format)
			}
		},
	})
	if err != nil {
		f.Close()
		fmt.Fprintln(stderr, err)
		return 1
	}
	// Stop what resolving the running configuration started (plugin
	// processes asked for their specs): after reloads, that of the last.
	defer func() { rt.Config().Close() }()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer procs.New(log).Start(ctx)()
	go func() {
		select {
		case <-rt.Ready():
			log.Info("running", "file", path, "pipelines", len(rt.Pipelines), "version", version(), "pid", os.Getpid())
		case <-ctx.Done():
		}
	}()
	stopReloads := serveReloads(ctx, rt, hup, path, data == nil && *watch, log)
	defer stopReloads()
	if err := rt.Run(ctx); err != nil {
		log.Error("stopped with an error", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

// serveReloads reloads rt on each signal from hup and, with watch, when the file at path
// changes, until ctx ends; the returned func stops it and waits.
func serveReloads(ctx context.Context, rt *host.Runtime, hup <-chan os.Signal, path string, watch bool, log *slog.Logger) func() {
	ctx, cancel := context.WithCancel(ctx)
	var changed <-chan struct{}
	var wg sync.WaitGroup
	if watch {
		ch := make(chan struct{}, 1)
		changed = ch
		wg.Go(func() { watchFile(ctx, path, watchEvery, ch, log) })
	}
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info("reload requested", "by", "SIGHUP")
			case <-changed:
				log.Info("reload requested", "by", "file change", "file", path)
			}
			// The outcome is logged and counted by the runtime.
			_, _ = rt.Reload(ctx)
		}
	})
	return func() {
		cancel()
		wg.Wait()
	}
}

// watchEvery is how often --watch looks at the file.
var watchEvery = 500 * time.Millisecond

// watchFile signals changed when the content of path changes and then
// stays the same for one more look, so an editor's half-written save is
// not reloaded. It reads the content rather than trusting modification
// times or inotify, which miss a Kubernetes ConfigMap's symlink swap.
func watchFile(ctx context.Context, path string, every time.Duration, changed chan<- struct{}, log *slog.Logger) {
	read := func() (sum [32]byte, ok bool) {
		data, err := os.ReadFile(path)
		if err != nil {
			return sum, false
		}
		return sha256.Sum256(data), true
	}
	last, _ := read()
	pending, seen := last, false
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sum, ok := read()
		switch {
		case !ok:
			if !seen {
				log.Warn("watch: cannot read the file; keeping the running pipelines", "file", path)
				seen = true
			}
			continue
		case sum == last:
			pending = last
		case sum != pending:
			pending = sum // changed: wait one look for it to settle
		default:
			last = sum
			select {
			case changed <- struct{}{}:
			default:
			}
		}
		seen = false
	}
}

// NewLogger logs to w at c's level, as JSON when c asks for it, else as text.
func NewLogger(w io.Writer, c host.LogConfig) *slog.Logger {
	return newLogger(w, c, new(slog.LevelVar))
}

// newLogger is NewLogger with its level in lv, which a reload may change.
func newLogger(w io.Writer, c host.LogConfig, lv *slog.LevelVar) *slog.Logger {
	_ = lv.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: lv}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func validateCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("validate", "validate FILE...", stderr)
	files, err := parseArgs(fs, args)
	if err != nil {
		return FlagExit(err)
	}
	if len(files) == 0 {
		fs.Usage()
		return 2
	}
	code := 0
	for _, path := range files {
		f, err := host.LoadFile(path, core.Default)
		if err != nil {
			printProblems(stderr, err)
			code = 1
			continue
		}
		n := 0
		for _, p := range f.Pipelines {
			n += len(p.Stages)
		}
		fmt.Fprintf(stdout, "%s: ok (%d pipelines, %d stages)\n", path, len(f.Pipelines), n)
		f.Close()
	}
	return code
}

func stagesCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("stages", "stages [--markdown] [--plugin-dir DIR]", stderr)
	md := fs.Bool("markdown", false, "print the Markdown reference (docs/stages.md)")
	dir := fs.String("plugin-dir", defaultPluginDir(), "directory whose plugin executables are listed too")
	extra, err := parseArgs(fs, args)
	if err != nil {
		return FlagExit(err)
	}
	if len(extra) > 0 {
		fmt.Fprintf(stderr, "mediapipe stages: unexpected argument %q\n", extra[0])
		return 2
	}
	defs := core.Default.List()
	if *md {
		fmt.Fprint(stdout, host.Markdown(defs))
		return 0
	}
	fmt.Fprint(stdout, host.Text(defs))
	if *dir == "" {
		return 0
	}
	found, err := bridge.Scan(*dir)
	if err != nil {
		fmt.Fprintf(stderr, "mediapipe stages: %v\n", err)
		return 1
	}
	if len(found.Stages) > 0 {
		fmt.Fprintf(stdout, "\nstage plugins in %s:\n", *dir)
		plugins := make([]core.Definition, len(found.Stages))
		for i, p := range found.Stages {
			plugins[i] = core.Definition{Spec: p.Spec}
			plugins[i].Spec.NoIsolate = "a plugin runs in a process of its own already"
		}
		fmt.Fprint(stdout, host.Text(plugins))
	}
	if len(found.SRBackends) > 0 {
		// Selected with sr-enhancer's backend = "plugin", path = FILE.
		fmt.Fprintf(stdout, "\nSR backend plugins in %s (sr-enhancer backend = \"plugin\"):\n", *dir)
		for _, p := range found.SRBackends {
			file := ""
			if base := filepath.Base(p.Path); base != p.Spec.Name {
				file = " (file " + base + ")"
			}
			// No kinds column: a backend is not a stage.
			fmt.Fprintf(stdout, "%-16s %s%s\n%s", p.Spec.Name, p.Spec.Summary, file, host.ParamsText(p.Spec.Params))
		}
	}
	if len(found.Policies) > 0 {
		fmt.Fprintf(stdout, "\npolicy plugins in %s (fec-encoder policy = \"plugin\"):\n", *dir)
		for _, p := range found.Policies {
			file := ""
			if base := filepath.Base(p.Path); base != p.Spec.Name {
				file = " (file " + base + ")"
			}
			fmt.Fprintf(stdout, "%-16s %s%s\n", p.Spec.Name, p.Spec.Summary, file)
		}
	}
	if len(found.Stages)+len(found.SRBackends)+len(found.Policies) == 0 {
		fmt.Fprintf(stdout, "\nno plugins in %s\n", *dir)
	}
	for _, err := range found.Problems {
		fmt.Fprintln(stderr, err)
	}
	return 0
}

func defaultPluginDir() string {
	if d := os.Getenv("MEDIAPIPE_PLUGIN_DIR"); d != "" {
		return d
	}
	if st, err := os.Stat(filepath.Join("bin", "plugins")); err == nil && st.IsDir() {
		return filepath.Join("bin", "plugins")
	}
	return ""
}

// parseArgs parses flags wherever they stand (`run FILE --log-level debug`
// as well as `run --log-level debug FILE`) and returns the other arguments.
// "--" ends the flags.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		left := fs.Args()
		if n := len(args) - len(left); n > 0 && args[n-1] == "--" {
			return append(rest, left...), nil // Parse ate the "--"
		}
		if len(left) == 0 {
			return rest, nil
		}
		rest = append(rest, left[0])
		args = left[1:]
	}
}

// FlagExit is a command's exit code after its flags failed to parse: 0 for
// --help, 2 for bad flags.
func FlagExit(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}
