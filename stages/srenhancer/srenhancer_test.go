package srenhancer

import (
	"bytes"
	"net"
	"testing"

	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/media/h264"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/stages/srenhancer/internal/srtest"
)

func TestHTTPBackendMarksEveryKeyframe(t *testing.T) {
	tags := testmedia.Tags(t, testmedia.Clip(t, testmedia.Options{}))
	srv := srtest.StandIn(t, "ok")
	r := srtest.Run(t, map[string]any{"backend": "http", "url": srv.URL + "/sr", "timeout": "5s"}, tags)
	srtest.CheckClean(t, r.File, 1280, 720)
	srtest.CheckStream(t, tags, r, 1280, 720)
	_, keys, _ := srtest.Kinds(tags)
	pics := srtest.KeyframePictures(t, r.File, 1280, 720)
	if len(pics) != keys {
		t.Fatalf("%d keyframes decoded, want %d", len(pics), keys)
	}
	for i, pic := range pics {
		if !srtest.Marked(pic, 1280) {
			t.Errorf("keyframe %d does not carry the backend's mark", i)
		}
	}
	if got := r.Counter("backend_enhanced"); got != float64(keys) {
		t.Errorf("backend_enhanced = %v, want %d", got, keys)
	}
	if got := r.Drops("backend_failure"); got != 0 {
		t.Errorf("backend_failure = %v", got)
	}
}

func TestHTTPBackendFailing(t *testing.T) {
	tags := testmedia.Tags(t, testmedia.Clip(t, testmedia.Options{}))
	_, keys, _ := srtest.Kinds(tags)
	closed := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return "http://" + l.Addr().String() + "/sr"
	}
	for _, c := range []struct {
		name, url, timeout string
	}{
		{"500", srtest.StandIn(t, "500").URL, "2s"},
		{"wrong size", srtest.StandIn(t, "wrongsize").URL, "2s"},
		{"not listening", closed(), "2s"},
		{"too slow", srtest.StandIn(t, "slow").URL, "200ms"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := srtest.Run(t, map[string]any{"backend": "http", "url": c.url, "timeout": c.timeout}, tags)
			srtest.CheckClean(t, r.File, 1280, 720)
			srtest.CheckStream(t, tags, r, 1280, 720)
			for i, pic := range srtest.KeyframePictures(t, r.File, 1280, 720) {
				if srtest.Marked(pic, 1280) {
					t.Errorf("keyframe %d is marked", i)
				}
			}
			failures, slow, skipped := r.Drops("backend_failure"), r.Drops("backend_too_slow"), r.Counter("backend_skipped")
			// 3 failures in a row start a 10 s back-off: the rest are skipped.
			// A slow answer may run into the keyframe's budget before the
			// timeout (backend_too_slow): it counts towards the back-off too.
			if c.name != "too slow" && slow != 0 {
				t.Errorf("backend_too_slow = %v for a backend that answers at once", slow)
			}
			if failures+slow != 3 || failures+slow+skipped != float64(keys) {
				t.Errorf("backend_failure = %v, backend_too_slow = %v, backend_skipped = %v, keyframes %d", failures, slow, skipped, keys)
			}
		})
	}
}

func TestBuiltin(t *testing.T) {
	tags := testmedia.Tags(t, testmedia.Clip(t, testmedia.Options{}))
	r := srtest.Run(t, map[string]any{}, tags)
	srtest.CheckClean(t, r.File, 1280, 720)
	srtest.CheckStream(t, tags, r, 1280, 720)
	// Late joiners get the enhanced stream's init tags, not the small picture's.
	init := r.Out[0].Stream.Init()
	if init == nil || len(init.Video) < flv.HeaderSize+5 {
		t.Fatalf("init tags %+v", init)
	}
	if sps, _, err := h264.ConfigSize(init.Video[flv.HeaderSize+5:]); err != nil || sps.Width != 1280 || sps.Height != 720 {
		t.Fatalf("init video header: %dx%d, %v", sps.Width, sps.Height, err)
	}
	if !bytes.Contains(init.Metadata, []byte("width\x00\x40\x94\x00")) { // 1280.0 as a float64
		t.Fatalf("init metadata not patched: %x", init.Metadata)
	}
	_, keys, _ := srtest.Kinds(tags)
	if got := r.Counter("backend_enhanced"); got != float64(keys) {
		t.Errorf("backend_enhanced = %v, want %d", got, keys)
	}
}
