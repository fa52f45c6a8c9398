package bridge

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/plugins/internal/pluginpb"
	"github.com/mediapipe/mediapipe/plugins/internal/shared"
)

// StartTimeout bounds how long a plugin may take to answer the handshake.
var StartTimeout = 10 * time.Second

// killGrace is how long kill lets go-plugin stop a process (it waits 2 s for
// a graceful exit, then kills) before the whole process group is killed.
const killGrace = 3 * time.Second

// describeTimeout bounds the Describe call after the handshake.
const describeTimeout = 5 * time.Second

// process is one running plugin program.
type process struct {
	path   string
	client *plugin.Client
	cmd    *exec.Cmd // leads a process group of its own
	pid    int
	stage  pluginpb.StageClient
	sr     pluginpb.SRBackendClient
	policy pluginpb.PolicyClient
	desc   *pluginpb.Description
	spec   core.Spec
	kind   string // what it serves: shared.KindStage, KindSR or KindPolicy
}

// kindNoun names each kind in errors ("is an SR backend plugin, not a stage").
var kindNoun = map[string]string{
	shared.KindStage:  "a stage",
	shared.KindSR:     "an SR backend",
	shared.KindPolicy: "a policy",
}

// procSlot holds the process serving a stage, an SR backend or a describer.
// Its mu also guards the holder's own fields.
type procSlot struct {
	mu   sync.Mutex
	proc *process
}

// PID is the plugin's current process id (0 while none runs).
func (s *procSlot) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.pid
}

// swap makes p the current process and kills the one it replaces, outside
// the lock: kill waits for the process to go.
func (s *procSlot) swap(p *process) {
	s.mu.Lock()
	old := s.proc
	s.proc = p
	s.mu.Unlock()
	if old != nil {
		old.kill()
	}
}

// kindAny asks start for whichever kind the plugin serves.
const kindAny = ""

// every process started and not yet killed, so Shutdown can end them all.
var (
	liveMu sync.Mutex
	live   = map[*process]struct{}{}
)

// Shutdown kills every plugin process this package started and has not
// stopped yet. Call it on the way out of the program.
func Shutdown() {
	liveMu.Lock()
	procs := make([]*process, 0, len(live))
	for p := range live {
		procs = append(procs, p)
	}
	liveMu.Unlock()
	for _, p := range procs {
		p.kill()
	}
}

// checkFile reports what makes path unusable as a program, in one line.
func checkFile(path string) error {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("plugin %s: no such file", path)
	case err != nil:
		return fmt.Errorf("plugin %s: %v", path, err)
	case st.IsDir():
		return fmt.Errorf("plugin %s: is a directory, not a program", path)
	case st.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("plugin %s: is not executable (chmod +x it)", path)
	}
	return nil
}

var pluginVersionRe = regexp.MustCompile(`Plugin version: (\d+)`)

// startError turns go-plugin's (often multi-line) start errors into one line
// naming the path.
func startError(path string, err error) error {
	msg := err.Error()
	low := strings.ToLower(msg)
	switch {
	case strings.Contains(low, "incompatible api version"):
		v := "another"
		if m := pluginVersionRe.FindStringSubmatch(msg); m != nil {
			v = m[1]
		}
		return fmt.Errorf("plugin %s: speaks plugin protocol version %s, this mediapipe speaks %d (rebuild the plugin against this mediapipe's SDK)",
			path, v, shared.ProtocolVersion)
	case strings.Contains(low, "timeout while waiting for plugin"):
		return fmt.Errorf("plugin %s: timed out after %s waiting for the plugin handshake (not a mediapipe plugin, or stuck starting)",
			path, StartTimeout)
	case strings.Contains(low, "exited before we could connect"),
		strings.Contains(low, "unrecognized remote plugin message"),
		strings.Contains(low, "incompatible core api version"),
		strings.Contains(low, "unsupported plugin protocol"),
		strings.Contains(low, "error parsing"):
		return fmt.Errorf("plugin %s: not a mediapipe plugin (no mediapipe plugin handshake)", path)
	case strings.Contains(low, "exec format error"):
		return fmt.Errorf("plugin %s: not a program this system can run (exec format error)", path)
	}
	first, _, _ := strings.Cut(msg, "\n")
	return fmt.Errorf("plugin %s: cannot start: %s", path, first)
}

// start runs the plugin at path, completes the handshake and asks Describe
// of the wanted kind (shared.KindStage, KindSR, KindPolicy or kindAny).
func start(path, kind string, log *slog.Logger) (*process, error) {
	return startArgs(path, nil, kind, log)
}

// startArgs is start with arguments for the program: an isolated stage is
// this binary with the subcommand that serves it.
func startArgs(path string, args []string, kind string, log *slog.Logger) (*process, error) {
	if err := checkFile(path); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: %v", path, err)
	}
	name := filepath.Base(path)
	if len(args) > 0 {
		name = args[len(args)-1] // the isolated stage, not the binary
	}
	plog := log.With("plugin", name)
	lw := newLogWriter(plog)
	cmd := exec.Command(abs, args...)
	ownGroup(cmd)
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig: shared.Handshake,
		Plugins: plugin.PluginSet{
			shared.KindStage: shared.StagePlugin(nil), shared.KindSR: shared.SRPlugin(nil), shared.KindPolicy: shared.PolicyPlugin(nil),
		},
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		StartTimeout:     StartTimeout,
		Stderr:           lw,
		SyncStderr:       lw,
		SyncStdout:       lw,
		GRPCDialOptions:  shared.DialOptions(),
		// Stderr lines reach slog through lw; go-plugin's own log is off.
		Logger: hclog.NewNullLogger(),
	})
	p := &process{path: path, client: client, cmd: cmd}
	liveMu.Lock()
	live[p] = struct{}{}
	liveMu.Unlock()
	fail := func(err error) (*process, error) {
		p.kill()
		return nil, err
	}
	rpc, err := client.Client()
	if err != nil {
		// Nothing to stop gracefully; a wrapper's children may hold the
		// program's output open, and go-plugin waits for it to close.
		p.killGroup()
		return fail(startError(path, err))
	}
	if rc := client.ReattachConfig(); rc != nil {
		p.pid = rc.Pid
	}
	raw, err := rpc.Dispense(shared.KindStage)
	if err != nil {
		return fail(fmt.Errorf("plugin %s: %v", path, err))
	}
	p.stage = raw.(pluginpb.StageClient)
	raw, err = rpc.Dispense(shared.KindSR)
	if err != nil {
		return fail(fmt.Errorf("plugin %s: %v", path, err))
	}
	p.sr = raw.(pluginpb.SRBackendClient)
	raw, err = rpc.Dispense(shared.KindPolicy)
	if err != nil {
		return fail(fmt.Errorf("plugin %s: %v", path, err))
	}
	p.policy = raw.(pluginpb.PolicyClient)

	// A plugin serves one service; the others answer Unimplemented.
	ctx, cancel := context.WithTimeout(context.Background(), describeTimeout)
	defer cancel()
	served := []struct {
		kind string
		desc *pluginpb.Description
		err  error
	}{{kind: shared.KindStage}, {kind: shared.KindSR}, {kind: shared.KindPolicy}}
	served[0].desc, served[0].err = p.stage.Describe(ctx, &pluginpb.DescribeRequest{})
	served[1].desc, served[1].err = p.sr.Describe(ctx, &pluginpb.DescribeRequest{})
	served[2].desc, served[2].err = p.policy.Describe(ctx, &pluginpb.DescribeRequest{})
	var desc *pluginpb.Description
	for _, s := range served {
		if s.err != nil {
			continue
		}
		if kind != kindAny && kind != s.kind {
			return fail(fmt.Errorf("plugin %s: is %s plugin, not %s", path, kindNoun[s.kind], kindNoun[kind]))
		}
		desc, p.kind = s.desc, s.kind
		break
	}
	if desc == nil {
		for _, s := range served {
			if status.Code(s.err) != codes.Unimplemented && (kind == kindAny || kind == s.kind) {
				return fail(fmt.Errorf("plugin %s: describe: %s", path, status.Convert(s.err).Message()))
			}
		}
		return fail(fmt.Errorf("plugin %s: serves neither a stage, an SR backend nor a policy", path))
	}
	if desc.Protocol != shared.ProtocolVersion {
		return fail(fmt.Errorf("plugin %s: speaks plugin protocol version %d, this mediapipe speaks %d (rebuild the plugin against this mediapipe's SDK)",
			path, desc.Protocol, shared.ProtocolVersion))
	}
	spec, err := shared.SpecFromPB(desc.Spec)
	if err != nil {
		return fail(fmt.Errorf("plugin %s: bad spec: %v", path, err))
	}
	if p.kind == shared.KindStage && spec.In == core.KindNone && spec.Out == core.KindNone {
		return fail(fmt.Errorf("plugin %s: stage %q declares neither an input nor an output kind", path, spec.Name))
	}
	p.desc, p.spec = desc, spec
	return p, nil
}

// kill stops the process (gracefully, then by force) and waits for it.
// What is left of its process group after killGrace is killed too: go-plugin
// waits until nothing holds the program's output open.
func (p *process) kill() {
	liveMu.Lock()
	_, ok := live[p]
	delete(live, p)
	liveMu.Unlock()
	if !ok {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.client.Kill()
	}()
	t := time.NewTimer(killGrace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		p.killGroup()
		<-done
	}
}

// killGroup kills the program's process group while its leader is not yet
// reaped (go-plugin reaps it once its output is closed), so the group id
// cannot belong to anyone else.
func (p *process) killGroup() {
	if p.cmd.Process != nil && !p.client.Exited() {
		killGroup(p.cmd.Process.Pid)
	}
}

// exited reports whether the process has ended.
func (p *process) exited() bool { return p.client.Exited() }
