package shared

import (
	"reflect"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
)

// TestSpecRoundTrip: a spec described by a plugin arrives as it was
// declared, sample and parameter bounds included.
func TestSpecRoundTrip(t *testing.T) {
	lo, hi := 1.0, 9.0
	want := core.Spec{
		Name: "round-trip", Summary: "test", In: core.KindFLV, Out: core.KindRTP,
		Params: []core.Param{
			{Name: "size", Type: core.TypeInt, Doc: "a number", Default: "3", Min: &lo, Max: &hi},
			{Name: "mode", Type: core.TypeString, Enum: []string{"a", "b"}, Required: true},
			{Name: "key", Type: core.TypeString, Secret: true},
		},
		Sample: "[[pipeline.stage]]\nplugin = \"round-trip\"\nsize = 3\n",
	}
	got, err := SpecFromPB(SpecToPB(want))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}

// A map parameter crosses to the plugin and decodes there as the host
// decoded it.
func TestMapValueRoundTrip(t *testing.T) {
	p := core.Param{Name: "waits", Type: core.TypeDurationMap}
	v, err := p.Normalize(map[string]any{"live/cam1": "2s", "b": "80ms"})
	if err != nil {
		t.Fatal(err)
	}
	pb, err := ValueToPB(v)
	if err != nil {
		t.Fatal(err)
	}
	back, err := p.Normalize(ValueFromPB(pb))
	if err != nil {
		t.Fatal(err)
	}
	m := back.(map[string]any)
	if m["live/cam1"] != 2*time.Second || m["b"] != 80*time.Millisecond || len(m) != 2 {
		t.Errorf("round trip gave %v", m)
	}
	if _, err := SpecFromPB(SpecToPB(core.Spec{Name: "x", In: core.KindFLV, Out: core.KindFLV, Params: []core.Param{p}})); err != nil {
		t.Errorf("a map parameter in a plugin's spec: %v", err)
	}
}
