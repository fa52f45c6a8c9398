package shared

import (
	"reflect"
	"testing"

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
