package rtmpsource

import (
	"bytes"
	"errors"
	"testing"
)

// chunk builds one fmt-0 chunk header on csid 3 (+ payload).
func chunk(length int, typ byte, payload []byte) []byte {
	b := []byte{0x03, 0, 0, 0, byte(length >> 16), byte(length >> 8), byte(length), typ, 1, 0, 0, 0}
	return append(b, payload...)
}

var guardCases = []struct {
	name    string
	stream  []byte
	wantErr error
}{
	{"small message in one chunk", chunk(4, 9, []byte{1, 2, 3, 4}), nil},
	{"message split in 128-byte chunks", append(append(chunk(200, 9, bytes.Repeat([]byte{7}, 128)), 0xc3), bytes.Repeat([]byte{7}, 72)...), nil},
	{"extended timestamp", append([]byte{0x03, 0xff, 0xff, 0xff, 0, 0, 2, 8, 1, 0, 0, 0, 0, 0, 0, 9}, 0xaf, 0x01), nil},
	{"set chunk size then a big chunk", append(chunk(4, 1, []byte{0, 0, 1, 0}), chunk(256, 9, make([]byte, 256))...), nil},
	{"over the cap", chunk(1<<20+1, 9, nil), errTooLarge},
	{"chunk size zero", chunk(4, 1, []byte{0, 0, 0, 0}), errMalformed},
	{"fmt 3 on a fresh chunk stream", []byte{0xc5}, errMalformed},
	{"empty message", chunk(0, 9, nil), errMalformed},
}

func TestChunkGuard(t *testing.T) {
	for _, tc := range guardCases {
		t.Run(tc.name, func(t *testing.T) {
			// byte by byte and all at once must agree
			for _, step := range []int{1, len(tc.stream)} {
				g := newChunkGuard(1 << 20)
				g.skip = 0
				g.state, g.need = gsBasic, 1
				var err error
				for i := 0; i < len(tc.stream) && err == nil; i += step {
					err = g.feed(tc.stream[i:min(i+step, len(tc.stream))])
				}
				if !errors.Is(err, tc.wantErr) && !(tc.wantErr == nil && err == nil) {
					t.Fatalf("step %d: err = %v, want %v", step, err, tc.wantErr)
				}
				if tc.wantErr == nil && g.state != gsBasic {
					t.Fatalf("step %d: ended mid-chunk in state %d", step, g.state)
				}
			}
		})
	}
}

func FuzzChunkGuard(f *testing.F) {
	for _, tc := range guardCases {
		f.Add(tc.stream)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		g := newChunkGuard(1 << 16)
		g.skip = 0
		g.state, g.need = gsBasic, 1
		_ = g.feed(b) // must not panic; pending must stay bounded
		if g.pending > g.maxPending+len(b) {
			t.Fatalf("pending %d", g.pending)
		}
	})
}
