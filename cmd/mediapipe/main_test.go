package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/host"
	"github.com/mediapipe/mediapipe/internal/cli"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// TestStagesDocIsCurrent fails when docs/stages.md no longer matches the
// stage specs: run `make docs`.
func TestStagesDocIsCurrent(t *testing.T) {
	want := host.Markdown(core.Default.List())
	got, err := os.ReadFile("../../docs/stages.md")
	if err != nil {
		t.Fatalf("docs/stages.md: %v (run make docs)", err)
	}
	if string(got) != want {
		t.Fatal("docs/stages.md is stale: run `make docs`")
	}
}

// TestMetricsDocIsCurrent fails when docs/metrics.md no longer lists the
// families the code exports: run `make docs`.
func TestMetricsDocIsCurrent(t *testing.T) {
	var out bytes.Buffer
	if code := cli.Main([]string{"metrics", "--markdown"}, &out, io.Discard); code != 0 {
		t.Fatalf("metrics --markdown: exit %d", code)
	}
	got, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatalf("docs/metrics.md: %v (run make docs)", err)
	}
	if string(got) != out.String() {
		t.Fatal("docs/metrics.md is stale: run `make docs`")
	}
}

// TestEveryDesignStageIsBuiltIn checks the names the product contract promises.
func TestEveryDesignStageIsBuiltIn(t *testing.T) {
	for _, name := range []string{"rtmp-source", "flv-tagger", "sr-enhancer", "rtp-fragmenter", "quic-retransmit",
		"udp-sink", "udp-source", "rtp-reorder", "flv-reassembler", "httpflv-sink", "flv-file-sink", "netsim"} {
		if _, ok := core.Default.Lookup(name); !ok {
			t.Errorf("stage %q is not registered", name)
		}
	}
	var out, errb bytes.Buffer
	if code := cli.Main([]string{"stages"}, &out, &errb); code != 0 {
		t.Fatalf("stages exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "rtp-reorder") || !strings.Contains(out.String(), "latency") {
		t.Fatalf("stages output lacks rtp-reorder and its latency parameter:\n%s", out.String())
	}
}

func TestValidateCommand(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "edge.toml")
	os.WriteFile(bad, []byte(`
[[pipeline]]
name = "edge"
  [[pipeline.stage]]
  use = "udp-source"
  listen = "127.0.0.1:5222"
  [[pipeline.stage]]
  use = "rtp-reorder"
  latency = "fast"
  [[pipeline.stage]]
  use = "flv-tagger"
  [[pipeline.stage]]
  use = "httpflv-sink"
`), 0o644)
	var out, errb bytes.Buffer
	code := cli.Main([]string{"validate", bad}, &out, &errb)
	if code != 1 {
		t.Fatalf("validate exit %d, want 1", code)
	}
	want := []string{
		bad + `: pipeline "edge" stage 2 (rtp-reorder): latency: "fast" is not a duration`,
		bad + `: pipeline "edge" stage 3 (flv-tagger): takes av input but stage 2 (rtp-reorder) outputs rtp`,
		bad + `: pipeline "edge" stage 4 (httpflv-sink): listen: required parameter is missing`,
	}
	got := strings.Split(strings.TrimSpace(errb.String()), "\n")
	if len(got) != len(want) {
		t.Fatalf("problems:\n%s\nwant:\n%s", errb.String(), strings.Join(want, "\n"))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d:\n got %s\nwant %s", i+1, got[i], want[i])
		}
	}

	shipped, err := filepath.Glob("../../pipelines/*.toml")
	if err != nil || len(shipped) == 0 {
		t.Fatalf("pipelines/*.toml: %v, %d files", err, len(shipped))
	}
	for _, good := range append([]string{"../../pipeline.example.toml"}, shipped...) {
		out.Reset()
		errb.Reset()
		if code := cli.Main([]string{"validate", good}, &out, &errb); code != 0 {
			t.Errorf("validate %s: exit %d\n%s", good, code, errb.String())
		}
	}
}

// TestValidateAddresses: listen and destination addresses that do not read
// host:port with a port 0-65535 are problems of validate, with their place,
// not failures of run.
func TestValidateAddresses(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "addr.toml")
	os.WriteFile(bad, []byte(`
[admin]
listen = "127.0.0.1"
[[pipeline]]
name = "cloud"
  [[pipeline.stage]]
  use = "rtmp-source"
  listen = "127.0.0.1:99999"
  [[pipeline.stage]]
  use = "flv-tagger"
  [[pipeline.stage]]
  use = "rtp-fragmenter"
  [[pipeline.stage]]
  use = "udp-sink"
  destinations = ["127.0.0.1:5222", "127.0.0.1:http"]
[[pipeline]]
name = "edge"
  [[pipeline.stage]]
  use = "udp-source"
  listen = "127.0.0.1:5222"
  [[pipeline.stage]]
  use = "rtp-reorder"
  [[pipeline.stage]]
  use = "flv-reassembler"
  [[pipeline.stage]]
  use = "httpflv-sink"
  listen = "localhost:8080:1"
`), 0o644)
	var out, errb bytes.Buffer
	if code := cli.Main([]string{"validate", bad}, &out, &errb); code != 1 {
		t.Fatalf("validate exit %d, want 1\n%s", code, errb.String())
	}
	want := []string{
		bad + `: admin.listen: "127.0.0.1" is not host:port: address 127.0.0.1: missing port in address`,
		bad + `: pipeline "cloud" stage 1 (rtmp-source): listen: "127.0.0.1:99999" is not host:port: port "99999" is not a number 0-65535`,
		bad + `: pipeline "cloud" stage 4 (udp-sink): destinations: item 2: "127.0.0.1:http" is not host:port: port "http" is not a number 0-65535`,
		bad + `: pipeline "edge" stage 4 (httpflv-sink): listen: "localhost:8080:1" is not host:port: address localhost:8080:1: too many colons in address`,
	}
	got := strings.Split(strings.TrimSpace(errb.String()), "\n")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n%s\nwant:\n%s", errb.String(), strings.Join(want, "\n"))
	}
}

// exampleEnv moves every listener of pipeline.example.toml to a free port,
// through the environment overrides a user would use.
func exampleEnv(t *testing.T) []string {
	t.Helper()
	rtx, udp := testrun.FreeUDP(t), testrun.FreeUDP(t)
	return []string{
		"MEDIAPIPE_ADMIN_LISTEN=" + testrun.FreeTCP(t),
		"MEDIAPIPE_PIPELINE_CLOUD_STAGE_1_LISTEN=" + testrun.FreeTCP(t),
		"MEDIAPIPE_PIPELINE_CLOUD_STAGE_4_LISTEN=" + rtx,
		"MEDIAPIPE_PIPELINE_CLOUD_STAGE_5_DESTINATIONS=" + udp,
		"MEDIAPIPE_PIPELINE_EDGE_STAGE_1_LISTEN=" + udp,
		"MEDIAPIPE_PIPELINE_EDGE_STAGE_2_RETRANSMIT=" + rtx,
		"MEDIAPIPE_PIPELINE_EDGE_STAGE_4_LISTEN=" + testrun.FreeTCP(t),
		"MEDIAPIPE_PIPELINE_EDGE_HLS_STAGE_1_LISTEN=" + testrun.FreeTCP(t),
	}
}

// TestExampleRunsAndStopsCleanly runs the example file in process and checks
// that every goroutine of every stage has ended after the stop.
func TestExampleRunsAndStopsCleanly(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	data, err := os.ReadFile("../../pipeline.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	r := testrun.Start(t, "pipeline.example.toml", string(data), exampleEnv(t),
		testrun.Dir("."), testrun.ReadyWithin(5*time.Second), testrun.StopWithin(2*time.Second))
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
}

// TestRunExitsZeroOnSIGTERM runs the real binary as a user would.
func TestRunExitsZeroOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "mediapipe")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd := exec.Command(bin, "run", "../../pipeline.example.toml")
			cmd.Env = append(os.Environ(), exampleEnv(t)...)
			stderr, _ := cmd.StderrPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			lines := make(chan string, 10000)
			go func() {
				sc := bufio.NewScanner(stderr)
				for sc.Scan() {
					select {
					case lines <- sc.Text():
					default:
					}
				}
				close(lines)
			}()
			var log []string
			deadline := time.After(10 * time.Second)
		wait:
			for {
				select {
				case l, ok := <-lines:
					if !ok {
						t.Fatalf("exited before running:\n%s", strings.Join(log, "\n"))
					}
					log = append(log, l)
					if strings.Contains(l, "msg=running") {
						break wait
					}
				case <-deadline:
					t.Fatalf("no 'running' line within 10 s:\n%s", strings.Join(log, "\n"))
				}
			}
			start := time.Now()
			cmd.Process.Signal(sig)
			errc := make(chan error, 1)
			go func() { errc <- cmd.Wait() }()
			select {
			case err := <-errc:
				if err != nil {
					t.Fatalf("exit: %v after %s", err, fmt.Sprint(time.Since(start)))
				}
			case <-time.After(2 * time.Second):
				_ = cmd.Process.Signal(syscall.SIGQUIT) // Go prints every goroutine's stack
				<-errc
				for l := range lines {
					log = append(log, l)
				}
				t.Fatalf("still running 2 s after the signal:\n%s", strings.Join(log, "\n"))
			}
		})
	}
}

// TestRunWatchReloads runs the binary with --watch on a copy of the
// example: a SIGHUP sent before anything else changes nothing and kills
// nothing; an edit of a live parameter is applied in place; a broken edit is
// refused with its problem logged; the process then still stops cleanly.
func TestRunWatchReloads(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := testrun.Binary(t)
	data, err := os.ReadFile("../../pipeline.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "relay.toml")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--watch", file)
	cmd.Env = append(os.Environ(), exampleEnv(t)...)
	var log testrun.LogBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("output:\n%s", log.String())
		}
	}()
	waitLog := func(what, line string) {
		t.Helper()
		testrun.Eventually(t, 10*time.Second, what, func() bool { return strings.Contains(log.String(), line) })
	}
	waitLog("the running line", "msg=running")

	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog("the SIGHUP reload", "unchanged=3") // cloud, edge, edge-hls

	live := strings.Replace(string(data), `use = "httpflv-sink"`, `use = "httpflv-sink"`+"\n  max_viewers = 7", 1)
	if err := os.WriteFile(file, []byte(live), 0o644); err != nil {
		t.Fatal(err)
	}
	waitLog("the file change to be applied in place", `changed_in_place="[edge stage 4 (httpflv-sink): max_viewers]"`)

	broken := strings.Replace(live, "max_viewers = 7", "max_viewers = -7", 1)
	if err := os.WriteFile(file, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	waitLog("the broken file's problem", "max_viewers: -7 is below the minimum 0")
	waitLog("the refusal", "reload refused")

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("exit after reloads: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("still running 5 s after SIGTERM")
	}
	if n := strings.Count(log.String(), "msg=reloaded"); n != 2 {
		t.Errorf("%d reloaded lines, want 2 (SIGHUP, edit)", n)
	}
}
