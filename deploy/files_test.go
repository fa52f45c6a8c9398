package deploy

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/host"
)

// TestDockerfileBuildsAsMakefile: the image's binaries are built by the
// Makefile's own targets, so `make build` and the image cannot drift; the
// Go version is go.mod's; what the runtime stages copy is what those
// targets produce or the repository holds.
func TestDockerfileBuildsAsMakefile(t *testing.T) {
	df, err := os.ReadFile("docker/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	text := string(df)
	var runs []string
	for _, m := range regexp.MustCompile(`(?m)^RUN (.*(?:\\\n.*)*)`).FindAllStringSubmatch(text, -1) {
		runs = append(runs, m[1])
	}
	if !slices.Contains(runs, "make build plugins VERSION=${VERSION}") {
		t.Fatalf("the build stage must run `make build plugins VERSION=${VERSION}`; its RUN lines: %q", runs)
	}
	for _, r := range runs {
		if strings.Contains(r, "go build") {
			t.Errorf("RUN %q builds outside the Makefile", r)
		}
	}
	// What make would run for the image: -trimpath and the version.
	out, err := exec.Command("make", "-C", "..", "-n", "-B", "build", "plugins", "VERSION=v9.9.9-test").CombinedOutput()
	if err != nil {
		t.Fatalf("make -n: %v\n%s", err, out)
	}
	builds := regexp.MustCompile(`(?m)^.*go build .*$`).FindAllString(string(out), -1)
	if len(builds) < 2 {
		t.Fatalf("make -n build plugins runs no go build for the binary and the plugins:\n%s", out)
	}
	for _, b := range builds {
		if !strings.Contains(b, "-trimpath") || !strings.Contains(b, "internal/cli.Version=v9.9.9-test") {
			t.Errorf("build without -trimpath or the version: %s", b)
		}
	}
	// The Go image's version is go.mod's language version.
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goVer := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	argVer := regexp.MustCompile(`(?m)^ARG GO_VERSION=(\S+)`).FindStringSubmatch(text)
	if goVer == nil || argVer == nil || string(goVer[1]) != argVer[1] {
		t.Errorf("Dockerfile GO_VERSION %v, go.mod says %s", argVer, goVer)
	}
	// Every COPY --from=build source is a make output or in the repository.
	for _, m := range regexp.MustCompile(`(?m)^COPY --from=build /src/(\S+)`).FindAllStringSubmatch(text, -1) {
		src := strings.TrimSuffix(m[1], "/")
		if src == "bin/mediapipe" || src == "bin/plugins" {
			continue
		}
		if _, err := os.Stat(filepath.Join("..", src)); err != nil {
			t.Errorf("COPY --from=build /src/%s: not in the repository", m[1])
		}
	}
	for _, want := range []string{"HEALTHCHECK", "USER 65532", "AS runtime-ffmpeg", "AS runtime"} {
		if !strings.Contains(text, want) {
			t.Errorf("Dockerfile has no %q", want)
		}
	}
}

// TestComposeRunsTheShippedPipelines: every mediapipe service of
// compose.yaml runs a file of pipelines/ that loads with the service's
// environment, publishes the ports that file listens on, and Prometheus
// scrapes each of them on its admin port.
func TestComposeRunsTheShippedPipelines(t *testing.T) {
	data, err := os.ReadFile("docker/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Volumes     []string          `json:"volumes"`
			Image       string            `json:"image"`
			Command     []string          `json:"command"`
			Environment map[string]string `json:"environment"`
			Ports       []string          `json:"ports"`
		} `json:"services"`
	}
	if err := yaml.Unmarshal(data, &compose); err != nil {
		t.Fatal(err)
	}
	prom, err := os.ReadFile("prometheus/compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	// Every file a service mounts is in the repository (Docker would mount
	// an empty directory in its place).
	for name, s := range compose.Services {
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if _, err := os.Stat(filepath.Join("docker", src)); err != nil {
				t.Errorf("%s mounts %s: %v", name, src, err)
			}
		}
	}
	imageEnv := map[string]string{"MEDIAPIPE_ADMIN_LISTEN": "0.0.0.0:9090"} // the Dockerfile's ENV
	n := 0
	for name, s := range compose.Services {
		if s.Image != image {
			continue
		}
		n++
		if len(s.Command) != 2 || s.Command[0] != "run" || !strings.HasPrefix(s.Command[1], "/opt/mediapipe/pipelines/") {
			t.Errorf("%s: command %q: want run /opt/mediapipe/pipelines/FILE", name, s.Command)
			continue
		}
		file := filepath.Join("../pipelines", filepath.Base(s.Command[1]))
		src, err := os.ReadFile(file)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		var environ []string
		for k, v := range imageEnv {
			environ = append(environ, k+"="+v)
		}
		for k, v := range s.Environment {
			environ = append(environ, k+"="+v)
		}
		f, err := host.Load(file, "", src, environ, core.Default)
		if err != nil {
			t.Errorf("%s: %s with the service's environment does not load:\n%v", name, file, err)
			continue
		}
		want := map[string]bool{portOfString(f.Admin.Listen) + "/tcp": true}
		for _, pc := range f.Pipelines {
			for _, st := range pc.Stages {
				if l, _ := st.Params["listen"].(string); l != "" && (st.Use == "rtmp-source" || strings.HasSuffix(st.Use, "-sink")) {
					want[portOfString(l)+"/tcp"] = true
				}
			}
		}
		for _, p := range s.Ports {
			inside := p[strings.LastIndex(p, ":")+1:]
			if inside == portOfString(f.Admin.Listen)+"/tcp" && !strings.HasPrefix(p, "127.0.0.1:") && s.Environment["MEDIAPIPE_ADMIN_TOKEN"] == "" {
				t.Errorf("%s publishes its admin port (%s) beyond this host without a token", name, p)
			}
			if !want[inside] {
				t.Errorf("%s publishes %s, where %s does not listen", name, p, file)
			}
		}
		if !strings.Contains(string(prom), `"`+name+":"+portOfString(f.Admin.Listen)+`"`) {
			t.Errorf("prometheus/compose.yml does not scrape %s:%s", name, portOfString(f.Admin.Listen))
		}
		f.Close()
	}
	if n < 3 {
		t.Errorf("compose.yaml runs %d mediapipe services, want a cloud and two edges", n)
	}
}

func portOfString(addr string) string {
	i := strings.LastIndex(addr, ":")
	return addr[i+1:]
}

// TestSystemdUnit: the unit passes systemd's own verification (with the
// binary it starts in place) and keeps its hardening.
func TestSystemdUnit(t *testing.T) {
	unit, err := os.ReadFile("systemd/mediapipe@.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes", "CapabilityBoundingSet=\n", "LimitNOFILE=", "ExecReload=/bin/kill -HUP $MAINPID"} {
		if !bytes.Contains(unit, []byte(want)) {
			t.Errorf("the unit has no %q", strings.TrimSpace(want))
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed (Debian's systemd package; make deps installs it)")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "mediapipe")
	build := exec.Command("go", "build", "-o", bin, "./cmd/mediapipe")
	build.Dir = ".." // in mediapipe's own module
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	// verify checks that ExecStart's program exists: point it at the one
	// just built, as installing it would.
	inst := bytes.ReplaceAll(unit, []byte("/usr/local/bin/mediapipe"), []byte(bin))
	path := filepath.Join(dir, "mediapipe@edge.service")
	if err := os.WriteFile(path, inst, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, analyze, "verify", "--man=no", path).CombinedOutput()
	// verify exits 0 on warnings such as an unknown key: any output fails.
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
