package rtmpsource_test

import (
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/stagetest"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// A reload that rotates publish_key while a publisher streams: that
// publisher keeps streaming to the end (every media tag arrives, one
// stream), a new publisher with the old key is refused and one with the new
// key is admitted. An invalid value and a non-live change are refused and
// leave the key as it was.
func TestReconfigurePublishKey(t *testing.T) {
	long := testmedia.Clip(t, testmedia.Options{Seconds: 3})
	short := testmedia.Clip(t, testmedia.Options{Seconds: 1})
	def, ok := core.Default.Lookup("rtmp-source")
	if !ok {
		t.Fatal("rtmp-source is not registered")
	}
	logs := &testrun.LogBuffer{}
	env := core.TestEnv("rtmp-source")
	env.Log = slog.New(slog.NewTextHandler(logs, nil))
	raw := func(key string) map[string]any {
		return map[string]any{"listen": "127.0.0.1:0", "publish_key": key, "reconnect_grace": "0s"} // ends at once: the test waits for them
	}
	st, err := def.Build(raw("first-key"), env)
	if err != nil {
		t.Fatal(err)
	}
	h := stagetest.Start(t, st, env, true)
	s := &source{h: h, env: env, url: "rtmp://" + st.(interface{ Addr() net.Addr }).Addr().String()}

	early := push(t, s.url+"/live/early?key=first-key", long, true)
	h.Out.WaitData(1, testrun.WaitLimit)
	if err := def.Reconfigure(st, raw("second-key")); err != nil {
		t.Fatalf("reconfigure: %v", err)
	}
	if _, _, ended := streamPackets(h.Out.Packets(), "live/early"); ended {
		t.Fatal("the publisher ended before the rotation took effect: make the clip longer")
	}

	refusedWith := func(key string) {
		t.Helper()
		cmd := push(t, s.url+"/live/late?key="+key, short, false)
		if err := cmd.Wait(); err == nil {
			t.Fatalf("a new publisher with key %q was admitted", key)
		}
	}
	refusedWith("first-key")
	admitted := push(t, s.url+"/live/rotated?key=second-key", short, false)
	if err := admitted.Wait(); err != nil {
		t.Fatalf("the new key was refused: %v\n%s", err, testmedia.Stderr(admitted))
	}
	tags, _ := tagAll(t, waitEnd(t, s, "live/rotated", testrun.WaitLimit))
	compareMedia(t, tags, testmedia.Tags(t, short))

	if err := def.Reconfigure(st, raw("x")); err != nil {
		t.Fatal(err) // and back, to check a refused change below keeps it
	}
	if err := def.Reconfigure(st, map[string]any{"listen": "127.0.0.1:0", "publish_key": int64(5)}); err == nil {
		t.Fatal("a publish_key that is not a string was accepted")
	}
	nonLive := raw("y")
	nonLive["idle_timeout"] = "3s"
	if err := def.Reconfigure(st, nonLive); !errors.Is(err, core.ErrNotLive) {
		t.Fatalf("a change to idle_timeout: %v, want ErrNotLive", err)
	}
	refusedWith("y")

	if err := early.Wait(); err != nil {
		t.Fatalf("the publisher admitted before the rotation: %v\n%s", err, testmedia.Stderr(early))
	}
	tags, _ = tagAll(t, waitEnd(t, s, "live/early", testrun.WaitLimit))
	compareMedia(t, tags, testmedia.Tags(t, long))
	if n := strings.Count(logs.String(), "stream start"); n != 2 {
		t.Errorf("%d streams started, want 2 (early once, rotated)", n)
	}
	if v := env.Metrics.Drop("publish_refused").Value(); v != 2 {
		t.Errorf("publish_refused = %v, want 2", v)
	}
	if strings.Contains(logs.String(), "second-key") {
		t.Error("the publish key was logged")
	}
}
