package bench

import (
	"context"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/internal/relaytoml"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// TestPublishAndView checks the load generators alone against
// rtmp-source → flv-tagger → httpflv-sink: go-rtmp's client publishes, and
// each viewer gets every tag since its first keyframe, byte for byte.
func TestPublishAndView(t *testing.T) {
	rtmpAddr, httpAddr := testrun.FreeTCP(t), testrun.FreeTCP(t)
	testrun.Start(t, "test.toml", relaytoml.Direct("direct", rtmpAddr, "httpflv-sink", httpAddr, ""), nil)
	cl := syntheticClip(600, 4)
	pub := &publisher{addr: rtmpAddr, app: "live", key: "s001", clip: cl, fast: false, ledger: newLedger()}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	pdone := make(chan error, 1)
	go func() { pdone <- pub.run(ctx) }()
	v := &viewer{addr: httpAddr, path: "/live/s001.flv", ledger: pub.ledger, idle: 5 * time.Second, lat: &histogram{}}
	time.Sleep(700 * time.Millisecond)
	vctx, vcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer vcancel()
	vdone := make(chan struct{})
	go func() { v.run(vctx); close(vdone) }()
	<-ctx.Done()
	if err := <-pdone; err != nil {
		t.Fatalf("publisher: %v", err)
	}
	<-vdone
	t.Logf("published %d tags; viewer: tags %d matched %d missing %d corrupt %d unknown %d dup %d ttff %v p50 %v max %v ended %v",
		pub.tags.Load(), v.tags.Load(), v.matched.Load(), v.missing(), v.corrupt.Load(), v.unknown.Load(), v.dup.Load(),
		time.Duration(v.ttff.Load()), v.lat.quantile(0.5), time.Duration(v.lat.max.Load()), v.ended.Load())
	if pub.tags.Load() == 0 || v.matched.Load() == 0 {
		t.Fatal("nothing went through")
	}
	if v.corrupt.Load()+v.unknown.Load() > 0 || v.missing() > 0 {
		t.Errorf("viewer got corrupt, unknown or missing tags")
	}
	if v.ttff.Load() == 0 {
		t.Errorf("no keyframe seen")
	}
}
