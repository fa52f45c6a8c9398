package flv

import "testing"

func TestKinds(t *testing.T) {
	for _, c := range tagCases {
		if len(c.tag) < HeaderSize {
			continue
		}
		body := c.tag[HeaderSize:]
		if got := InitKindOf(c.hdr.Type, body); got != c.init {
			t.Errorf("%s: InitKindOf = %d, want %d", c.name, got, c.init)
		}
		if got := IsVideoKeyframe(body); c.hdr.Type == TypeVideo && got != c.key {
			t.Errorf("%s: IsVideoKeyframe = %v, want %v", c.name, got, c.key)
		}
	}
}
