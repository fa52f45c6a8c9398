package quicretransmit

import (
	"testing"

	"github.com/knadh/koanf/parsers/toml/v2"

	"github.com/mediapipe/mediapipe/core"
)

// TestSample checks the example block is valid TOML with valid parameters.
func TestSample(t *testing.T) {
	m, err := toml.Parser().Unmarshal([]byte(Sample))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := m["pipeline"].(map[string]any)
	stages, _ := p["stage"].([]any)
	if len(stages) != 1 {
		t.Fatalf("sample holds %d stages", len(stages))
	}
	raw := stages[0].(map[string]any)
	if raw["use"] != "quic-retransmit" {
		t.Fatalf("use = %v", raw["use"])
	}
	delete(raw, "use")
	def, _ := core.Default.Lookup("quic-retransmit")
	if errs := def.Check(raw); len(errs) > 0 {
		t.Fatal(errs)
	}
}
