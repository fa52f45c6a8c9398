package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mediapipe/mediapipe/internal/cli"
)

// TestStagesListsPlugins: `mediapipe stages --plugin-dir DIR` lists the
// stage, SR backend and policy plugins found there, each in its section,
// and fails on a directory it cannot read.
func TestStagesListsPlugins(t *testing.T) {
	dir := t.TempDir()
	buildPlugin(t, dir, "stream-filter")
	buildPlugin(t, dir, "sr-sharpen")
	buildPlugin(t, dir, "policy-worst-loss")
	if err := os.WriteFile(filepath.Join(dir, "tool.sh"), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := cli.Main([]string{"stages", "--plugin-dir", dir}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	text := out.String()
	stages, srs, ok := strings.Cut(text, "SR backend plugins in "+dir)
	if !ok || !strings.Contains(stages, "stage plugins in "+dir) {
		t.Fatalf("no stage and SR backend sections:\n%s", text)
	}
	_, stages, _ = strings.Cut(stages, "stage plugins in "+dir)
	if !strings.Contains(stages, "stream-filter") || !strings.Contains(stages, "drop_audio") || strings.Contains(stages, "sr-sharpen") {
		t.Errorf("stage plugins section:\n%s", stages)
	}
	srs, policies, ok := strings.Cut(srs, "policy plugins in "+dir)
	if !ok {
		t.Fatalf("no policy section:\n%s", text)
	}
	if !strings.Contains(srs, "sr-sharpen") || !strings.Contains(srs, "unsharp") || strings.Contains(srs, "stream-filter") {
		t.Errorf("SR backend section:\n%s", srs)
	}
	if !strings.Contains(policies, "policy-worst-loss") || !strings.Contains(policies, "worst edge") || strings.Contains(policies, "sr-sharpen") {
		t.Errorf("policy section:\n%s", policies)
	}
	if !strings.Contains(errb.String(), "tool.sh") {
		t.Errorf("stderr does not name the file that is no plugin: %q", errb.String())
	}

	for name, bad := range map[string]string{
		"missing":   filepath.Join(dir, "nope"),
		"not a dir": filepath.Join(dir, "tool.sh"),
	} {
		t.Run(name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := cli.Main([]string{"stages", "--plugin-dir", bad}, &out, &errb)
			if code == 0 || !strings.Contains(errb.String(), bad) {
				t.Errorf("exit %d, stderr %q: want non-zero and the directory named", code, errb.String())
			}
		})
	}
}
