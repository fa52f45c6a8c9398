package host_test

import (
	"strings"
	"testing"

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
