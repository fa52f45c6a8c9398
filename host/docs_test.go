package host_test

import (
	"strings"
	"testing"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/host"
)

// The reference documents the file's own keys from the same specs that
// decode them: a default changed in a tag shows up here.
func TestMarkdownDocumentsFileKeys(t *testing.T) {
	md := host.Markdown(nil)
	for _, want := range []string{
		"### `[admin]`", "| `listen` | string | **required** |",
		"### `[log]`", "| `level` | string | `info` | debug, info, warn, error |",
		"### `[[pipeline]]`", "| `queue` | int | `1024` | 1 – 1048576 |",
		"### `[[pipeline.stage]]`", "| `use` | string |", "| `plugin` | string |",
		"`MEDIAPIPE_LOG_LEVEL`",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("reference lacks %q", want)
		}
	}
}

// Each stage's sample, which stages/all checks against its spec, is shown
// under its parameters.
func TestMarkdownShowsSamples(t *testing.T) {
	sample := "[[pipeline.stage]]\nuse = \"demo-sink\"\nlisten = \"127.0.0.1:1\"\n"
	def := core.Definition{Spec: core.Spec{Name: "demo-sink", In: core.KindFLV, Sample: sample}}
	md := host.Markdown([]core.Definition{def})
	if want := "Example:\n\n```toml\n" + sample + "```\n"; !strings.Contains(md, want) {
		t.Errorf("reference lacks the sample block %q:\n%s", want, md)
	}
}
