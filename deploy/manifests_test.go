// Package deploy checks the deployment files against the code they deploy:
// the Kubernetes manifests decode strictly into the API's own types and
// name only images, ports, files and keys that exist, and every pod's
// pipeline file, with the environment its manifest gives it, loads as
// `mediapipe run` would load it. A separate module, so the Kubernetes API
// types stay out of mediapipe's own dependencies.
package deploy

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/host"
	_ "github.com/mediapipe/mediapipe/stages/all"
)

// image is what deploy/docker builds (compose.yaml tags it so).
const image = "mediapipe:local"

type manifests struct {
	configMaps map[string]*corev1.ConfigMap
	secrets    map[string]*corev1.Secret
	services   []*corev1.Service
	pods       []pod // the pod templates of Deployments and DaemonSets
}

type pod struct {
	kind, name string
	labels     map[string]string
	annot      map[string]string
	spec       corev1.PodSpec
}

// load decodes every document of the files kustomization.yaml lists into
// its type, refusing unknown fields (a misspelt key is an error, as the API
// server's strict field validation makes it).
func load(t *testing.T) *manifests {
	t.Helper()
	var kust struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Labels     []any    `json:"labels"`
		Resources  []string `json:"resources"`
	}
	data, err := os.ReadFile("kubernetes/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, &kust); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	files, _ := filepath.Glob("kubernetes/*.yaml")
	var listed []string
	for _, r := range kust.Resources {
		listed = append(listed, filepath.Join("kubernetes", r))
	}
	listed = append(listed, "kubernetes/kustomization.yaml")
	slices.Sort(listed)
	if !slices.Equal(files, listed) {
		t.Fatalf("kustomization.yaml lists %v; the directory has %v", listed, files)
	}
	m := &manifests{configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}}
	for _, f := range kust.Resources {
		data, err := os.ReadFile(filepath.Join("kubernetes", f))
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
			var head struct{ APIVersion, Kind string }
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
				t.Fatalf("%s document %d: %v", f, i+1, err)
			}
			where := fmt.Sprintf("%s document %d (%s)", f, i+1, head.Kind)
			strict := func(v any) {
				if err := yaml.UnmarshalStrict([]byte(doc), v); err != nil {
					t.Fatalf("%s: %v", where, err)
				}
			}
			switch head.APIVersion + " " + head.Kind {
			case "v1 ConfigMap":
				var o corev1.ConfigMap
				strict(&o)
				m.configMaps[o.Name] = &o
			case "v1 Secret":
				var o corev1.Secret
				strict(&o)
				m.secrets[o.Name] = &o
			case "v1 Service":
				var o corev1.Service
				strict(&o)
				m.services = append(m.services, &o)
			case "apps/v1 Deployment":
				var o appsv1.Deployment
				strict(&o)
				checkSelector(t, where, o.Spec.Selector.MatchLabels, o.Spec.Template.Labels)
				m.pods = append(m.pods, pod{"Deployment", o.Name, o.Spec.Template.Labels, o.Spec.Template.Annotations, o.Spec.Template.Spec})
			case "apps/v1 DaemonSet":
				var o appsv1.DaemonSet
				strict(&o)
				checkSelector(t, where, o.Spec.Selector.MatchLabels, o.Spec.Template.Labels)
				m.pods = append(m.pods, pod{"DaemonSet", o.Name, o.Spec.Template.Labels, o.Spec.Template.Annotations, o.Spec.Template.Spec})
			default:
				t.Fatalf("%s: apiVersion %q kind %q is not one this test knows", where, head.APIVersion, head.Kind)
			}
		}
	}
	return m
}

func checkSelector(t *testing.T, where string, sel, labels map[string]string) {
	t.Helper()
	if len(sel) == 0 {
		t.Errorf("%s: empty selector", where)
	}
	for k, v := range sel {
		if labels[k] != v {
			t.Errorf("%s: selector %s=%s does not match the pod template's labels", where, k, v)
		}
	}
}

// TestKubernetesManifests: what `kubectl apply -k deploy/kubernetes` would
// create is well-formed and self-consistent, and each pod would start.
func TestKubernetesManifests(t *testing.T) {
	m := load(t)
	if len(m.pods) != 2 {
		t.Fatalf("want the cloud Deployment and the edge DaemonSet, got %d pod templates", len(m.pods))
	}
	for _, p := range m.pods {
		t.Run(p.kind+"/"+p.name, func(t *testing.T) { checkPod(t, m, p) })
	}
	for _, s := range m.services {
		checkService(t, m, s)
	}
}

func checkPod(t *testing.T, m *manifests, p pod) {
	if len(p.spec.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(p.spec.Containers))
	}
	c := p.spec.Containers[0]
	if c.Image != image {
		t.Errorf("image %q: the image deploy/docker builds is %q", c.Image, image)
	}
	sc := c.SecurityContext
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("container security context must forbid escalation, keep the root filesystem read-only and drop every capability")
	}
	if ps := p.spec.SecurityContext; ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot {
		t.Errorf("pod must run as non-root")
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources: want cpu and memory requests and a memory limit")
	}

	// The pipeline file: mounted from the ConfigMap, named in args, equal
	// to the one shipped in pipelines/.
	if len(c.Args) < 2 || c.Args[0] != "run" {
		t.Fatalf("args %q: want run [--watch] FILE", c.Args)
	}
	if !slices.Contains(c.Args, "--watch") {
		t.Errorf("args %q: without --watch a ConfigMap change is never reloaded", c.Args)
	}
	file := c.Args[len(c.Args)-1]
	data := mountedFile(t, m, p, c, file)

	// Its environment, secrets resolved.
	var environ []string
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			environ = append(environ, e.Name+"="+e.Value)
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			s := m.secrets[ref.Name]
			if s == nil {
				t.Fatalf("env %s: no Secret %q", e.Name, ref.Name)
			}
			v, ok := s.StringData[ref.Key]
			if !ok {
				t.Fatalf("env %s: Secret %q has no key %q", e.Name, ref.Name, ref.Key)
			}
			environ = append(environ, e.Name+"="+v)
		default:
			t.Fatalf("env %s: only values and secretKeyRefs are expected", e.Name)
		}
	}
	f, err := host.Load(file, "", data, environ, core.Default)
	if err != nil {
		t.Fatalf("%s with the manifest's environment does not load:\n%v", file, err)
	}
	defer f.Close()

	// Every port the container declares is one the file listens on (or,
	// for the cloud's RTP, sends to), and every listener is declared.
	listens := map[int32]corev1.Protocol{}
	addPort := func(addr string, proto corev1.Protocol) {
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		n, _ := strconv.Atoi(port)
		listens[int32(n)] = proto
	}
	if f.Admin == nil {
		t.Fatalf("%s: no admin address: the probes and Prometheus have nothing to ask", file)
	}
	addPort(f.Admin.Listen, corev1.ProtocolTCP)
	for _, pc := range f.Pipelines {
		for _, s := range pc.Stages {
			l, _ := s.Params["listen"].(string)
			switch s.Use {
			case "rtmp-source", "httpflv-sink", "hls-sink":
				addPort(l, corev1.ProtocolTCP)
			case "quic-retransmit", "udp-source":
				addPort(l, corev1.ProtocolUDP)
			}
		}
	}
	named := map[string]int32{}
	for _, cp := range c.Ports {
		named[cp.Name] = cp.ContainerPort
		if proto, ok := listens[cp.ContainerPort]; !ok || proto != cp.Protocol {
			t.Errorf("port %s %d/%s: %s does not listen there", cp.Name, cp.ContainerPort, cp.Protocol, file)
		}
		delete(listens, cp.ContainerPort)
	}
	for port, proto := range listens {
		t.Errorf("%s listens on %d/%s, which the container does not declare", file, port, proto)
	}
	adminPort := portOf(t, f.Admin.Listen)
	for what, probe := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != "/healthz" || resolvePort(named, probe.HTTPGet.Port) != adminPort {
			t.Errorf("%s probe: want GET /healthz on the admin port %d", what, adminPort)
		}
	}
	if p.annot["prometheus.io/scrape"] != "true" || p.annot["prometheus.io/port"] != strconv.Itoa(int(adminPort)) || p.annot["prometheus.io/path"] != "/metrics" {
		t.Errorf("Prometheus annotations %v: want scrape on the admin port %d, /metrics", p.annot, adminPort)
	}
	if p.spec.HostNetwork && !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == "MEDIAPIPE_ADMIN_TOKEN" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil
	}) {
		t.Errorf("host network puts the admin API on the node's address: it needs MEDIAPIPE_ADMIN_TOKEN from the Secret")
	}
	if p.spec.HostNetwork && p.spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("host network without dnsPolicy ClusterFirstWithHostNet: Service names do not resolve")
	}
}

// mountedFile returns the content of path in c, from the ConfigMap volume
// mounted over its directory, after checking the ConfigMap holds exactly a
// file of pipelines/ and no secret.
func mountedFile(t *testing.T, m *manifests, p pod, c corev1.Container, path string) []byte {
	t.Helper()
	for _, vm := range c.VolumeMounts {
		if filepath.Dir(path) != vm.MountPath {
			continue
		}
		for _, v := range p.spec.Volumes {
			if v.Name != vm.Name || v.ConfigMap == nil {
				continue
			}
			cm := m.configMaps[v.ConfigMap.Name]
			if cm == nil {
				t.Fatalf("volume %s: no ConfigMap %q", v.Name, v.ConfigMap.Name)
			}
			key := filepath.Base(path)
			for _, it := range v.ConfigMap.Items {
				if it.Path == filepath.Base(path) {
					key = it.Key
				}
			}
			data, ok := cm.Data[key]
			if !ok {
				t.Fatalf("ConfigMap %q has no key %q", cm.Name, key)
			}
			checkShipped(t, key, data)
			return []byte(data)
		}
	}
	t.Fatalf("%s is not in a ConfigMap volume of the container", path)
	return nil
}

// shipped says which file of pipelines/ each ConfigMap key holds.
var shipped = map[string]string{
	"cloud.toml": "../pipelines/cloud-multicast.toml",
	"edge.toml":  "../pipelines/edge-multicast.toml",
}

var secretKey = regexp.MustCompile(`(?m)^\s*(publish_key|play_key|token|secret|key)\s*=`)

func checkShipped(t *testing.T, key, data string) {
	t.Helper()
	want, err := os.ReadFile(shipped[key])
	if err != nil {
		t.Fatalf("ConfigMap key %s: which pipelines/ file it holds is not known: %v", key, err)
	}
	if !bytes.Equal([]byte(data), want) {
		t.Errorf("ConfigMap key %s differs from %s: keep the manifests' pipelines the shipped ones", key, shipped[key])
	}
	if loc := secretKey.FindString(data); loc != "" {
		t.Errorf("ConfigMap key %s sets %q: secrets belong in the Secret", key, strings.TrimSpace(loc))
	}
}

func portOf(t *testing.T, addr string) int32 {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(port)
	return int32(n)
}

func resolvePort(named map[string]int32, p intstr.IntOrString) int32 {
	if p.Type == intstr.String {
		return named[p.StrVal]
	}
	return p.IntVal
}

// checkService: a Service selects pods of a template here and targets
// ports those pods declare, with the same protocol.
func checkService(t *testing.T, m *manifests, s *corev1.Service) {
	t.Helper()
	var target *pod
	for i, p := range m.pods {
		match := len(s.Spec.Selector) > 0
		for k, v := range s.Spec.Selector {
			match = match && p.labels[k] == v
		}
		if match {
			target = &m.pods[i]
		}
	}
	if target == nil {
		t.Errorf("Service %s selects no pod template", s.Name)
		return
	}
	for _, sp := range s.Spec.Ports {
		found := false
		for _, cp := range target.spec.Containers[0].Ports {
			if (sp.TargetPort.Type == intstr.String && sp.TargetPort.StrVal == cp.Name) || (sp.TargetPort.Type == intstr.Int && sp.TargetPort.IntVal == cp.ContainerPort) {
				found = cp.Protocol == sp.Protocol
			}
		}
		if !found {
			t.Errorf("Service %s port %s: no container port %s with protocol %s in %s", s.Name, sp.Name, sp.TargetPort.String(), sp.Protocol, target.name)
		}
	}
}
