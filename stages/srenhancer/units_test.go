package srenhancer

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/amf0"
	"github.com/mediapipe/mediapipe/core/sr"
	"github.com/mediapipe/mediapipe/core/stagetest"
)

func TestConfigCheck(t *testing.T) {
	def, _ := core.Default.Lookup("sr-enhancer")
	for _, c := range []struct {
		name string
		raw  map[string]any
		want string // "" for no error
	}{
		{"defaults", map[string]any{}, ""},
		{"http", map[string]any{"backend": "http", "url": "http://127.0.0.1:8000/sr"}, ""},
		{"http without url", map[string]any{"backend": "http"}, `url: required when backend = "http"`},
		{"http with a bad url", map[string]any{"backend": "http", "url": "127.0.0.1:8000"}, "url: "},
		{"plugin without path", map[string]any{"backend": "plugin"}, `path: required when backend = "plugin"`},
		{"unknown backend", map[string]any{"backend": "gpu"}, "backend: "},
		{"scale 5", map[string]any{"scale": 5}, "scale: 5 is above the maximum 4"},
		{"scale 1", map[string]any{"scale": 1}, "scale: 1 is below the minimum 2"},
		{"timeout not a duration", map[string]any{"timeout": "fast"}, "timeout: "},
		{"unknown key", map[string]any{"model": "x"}, "model: unknown parameter"},
	} {
		t.Run(c.name, func(t *testing.T) {
			errs := def.Check(c.raw)
			if c.want == "" {
				if len(errs) > 0 {
					t.Fatalf("errors: %v", errs)
				}
				return
			}
			if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), c.want) {
				t.Fatalf("errors %v, want one starting %q", errs, c.want)
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	def, _ := core.Default.Lookup("sr-enhancer")
	self, _ := os.Executable()
	for _, c := range []struct {
		name string
		raw  map[string]any
		want string
	}{
		{"ffmpeg missing", map[string]any{"ffmpeg": "/nonexistent/ffmpeg"}, "ffmpeg: "},
		{"plugin missing", map[string]any{"backend": "plugin", "path": "/nonexistent/sr-plugin"}, "backend plugin: "},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := def.Build(c.raw, core.TestEnv("sr-enhancer")); err == nil || !strings.HasPrefix(err.Error(), c.want) {
				t.Fatalf("err %v, want %q...", err, c.want)
			}
		})
	}
	t.Run("no plugin bridge linked", func(t *testing.T) {
		if _, err := exec.LookPath("ffmpeg"); err != nil {
			t.Skip("ffmpeg not on PATH")
		}
		st, err := def.Build(map[string]any{"backend": "plugin", "path": self}, core.TestEnv("sr-enhancer"))
		if err != nil {
			t.Fatal(err)
		}
		err = st.(core.Opener).Open(context.Background())
		if !errors.Is(err, sr.ErrNoPlugins) || !strings.HasPrefix(err.Error(), "backend plugin: ") {
			t.Fatalf("Open: %v", err)
		}
	})
}

// metadataBody builds an onMetaData body as FLV writers do, with values of
// every common type around width and height.
func metadataBody(prefix bool, w, h float64) []byte {
	var b []byte
	str := func(s string) {
		b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
		b = append(b, s...)
	}
	num := func(v float64) {
		b = append(b, amf0.Number)
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(v))
	}
	if prefix {
		b = append(b, amf0.String)
		str("@setDataFrame")
	}
	b = append(b, amf0.String)
	str("onMetaData")
	b = append(b, amf0.ECMAArray, 0, 0, 0, 6)
	str("duration")
	num(5)
	str("encoder")
	b = append(b, amf0.String)
	str("Lavf59.27.100")
	str("nested")
	b = append(b, amf0.Object)
	str("width")
	num(7) // not the picture's: must stay
	b = append(b, 0, 0, amf0.ObjectEnd)
	str("list")
	b = append(b, amf0.StrictArray, 0, 0, 0, 2, amf0.Bool, 1, amf0.Null)
	str("width")
	num(w)
	str("height")
	num(h)
	return append(b, 0, 0, amf0.ObjectEnd)
}

func TestPatchMetadata(t *testing.T) {
	for _, prefix := range []bool{false, true} {
		body := metadataBody(prefix, 320, 180)
		if !patchMetadata(body, 4) {
			t.Fatal("not recognised as onMetaData")
		}
		if want := metadataBody(prefix, 1280, 720); string(body) != string(want) {
			t.Fatalf("prefix %v:\n got %x\nwant %x", prefix, body, want)
		}
	}
	body := metadataBody(false, 321, 181)
	patchMetadata(body, 3)
	if want := metadataBody(false, 962, 542); string(body) != string(want) {
		t.Fatal("odd sizes are not rounded down to even")
	}
	if patchMetadata([]byte{amf0.String, 0, 3, 'a', 'b', 'c'}, 4) {
		t.Fatal("a script tag that is not onMetaData was taken")
	}
}

func FuzzPatchMetadata(f *testing.F) {
	f.Add(metadataBody(false, 320, 180))
	f.Add(metadataBody(true, 640, 360))
	f.Fuzz(func(t *testing.T, body []byte) {
		patchMetadata(body, 4)
	})
}

func TestToI420(t *testing.T) {
	for _, c := range []struct {
		name    string
		format  string
		r, g, b byte
		y, u, v byte
	}{
		{"white", "rgb24", 255, 255, 255, 235, 128, 128},
		{"black", "bgr24", 0, 0, 0, 16, 128, 128},
		{"red rgb", "rgb24", 255, 0, 0, 82, 90, 240},
		{"red bgr", "bgr24", 255, 0, 0, 82, 90, 240},
	} {
		t.Run(c.name, func(t *testing.T) {
			const w, h = 6, 4
			im := &sr.Image{Width: w + 1, Height: h + 1, Format: c.format, Pix: make([]byte, (w+1)*(h+1)*3)}
			for i := 0; i < len(im.Pix); i += 3 {
				if c.format == "rgb24" {
					im.Pix[i], im.Pix[i+1], im.Pix[i+2] = c.r, c.g, c.b
				} else {
					im.Pix[i], im.Pix[i+1], im.Pix[i+2] = c.b, c.g, c.r
				}
			}
			dst := make([]byte, w*h*3/2)
			toI420(im, dst, w, h)
			for i, got := range dst {
				want := c.y
				if i >= w*h {
					want = c.u
				}
				if i >= w*h*5/4 {
					want = c.v
				}
				if got != want {
					t.Fatalf("byte %d = %d, want %d", i, got, want)
				}
			}
		})
	}
}

func BenchmarkToI420(b *testing.B) {
	im := &sr.Image{Width: 1280, Height: 720, Format: "bgr24", Pix: make([]byte, 1280*720*3)}
	dst := make([]byte, 1280*720*3/2)
	b.ReportAllocs()
	for b.Loop() {
		toI420(im, dst, 1280, 720)
	}
}

type fakeBackend struct {
	calls int
	fail  bool
}

func (f *fakeBackend) Enhance(ctx context.Context, in *sr.Image, scale int) (*sr.Image, error) {
	f.calls++
	if f.fail {
		return nil, errors.New("down")
	}
	return &sr.Image{Width: in.Width * scale, Height: in.Height * scale, Format: "bgr24", Pix: make([]byte, in.Width*scale*in.Height*scale*3)}, nil
}

func (f *fakeBackend) Close() error { return nil }

func TestGuardBackoff(t *testing.T) {
	env := core.TestEnv("sr-enhancer")
	clock := stagetest.NewFakeClock(time.Unix(1_700_000_000, 0))
	env.Clock = clock
	g := newGuard(env, time.Second, 10*time.Second, 3)
	fb := &fakeBackend{fail: true}
	g.setBackend(fb)
	in := &sr.Image{Width: 2, Height: 2, Format: "rgb24", Pix: make([]byte, 12)}
	call := func() bool { return g.enhance(context.Background(), in, 2, time.Time{}) != nil }
	for _, step := range []struct {
		advance   time.Duration
		fail      bool
		wantOK    bool
		wantCalls int
	}{
		{0, true, false, 1},
		{0, true, false, 2},
		{0, true, false, 3},                // third in a row: back-off starts
		{time.Second, true, false, 3},      // left alone
		{8 * time.Second, true, false, 3},  // still (10 s)
		{2 * time.Second, true, false, 4},  // probe fails: back off again at once
		{5 * time.Second, false, false, 4}, // left alone though it is back
		{5 * time.Second, false, true, 5},  // probe succeeds
		{0, true, false, 6},                // a new burst needs 3 again
		{0, false, true, 7},
	} {
		clock.Advance(step.advance)
		fb.fail = step.fail
		if ok := call(); ok != step.wantOK || fb.calls != step.wantCalls {
			t.Fatalf("after %v: ok %v calls %d, want %v %d", step.advance, ok, fb.calls, step.wantOK, step.wantCalls)
		}
	}
	if got := env.Metrics.Drop("backend_failure").Value(); got != 5 {
		t.Fatalf("backend_failure = %v, want 5", got)
	}
	if got := core.CounterValue(env.Metrics.Counter("backend_skipped")); got != 3 {
		t.Fatalf("backend_skipped = %v, want 3", got)
	}
	// A wrongly sized answer is a failure too.
	g2 := newGuard(env, time.Second, time.Second, 3)
	g2.setBackend(&wrongSize{})
	if g2.enhance(context.Background(), in, 2, time.Time{}) != nil {
		t.Fatal("a wrongly sized picture was accepted")
	}
}

type wrongSize struct{ fakeBackend }

func (w *wrongSize) Enhance(ctx context.Context, in *sr.Image, scale int) (*sr.Image, error) {
	return &sr.Image{Width: in.Width, Height: in.Height, Format: "bgr24", Pix: make([]byte, in.Width*in.Height*3)}, nil
}

// sleepy answers correctly, but only after delay (or when ctx ends).
type sleepy struct {
	fakeBackend
	delay time.Duration
}

func (s *sleepy) Enhance(ctx context.Context, in *sr.Image, scale int) (*sr.Image, error) {
	s.calls++
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &sr.Image{Width: in.Width * scale, Height: in.Height * scale, Format: "bgr24", Pix: make([]byte, in.Width*scale*in.Height*scale*3)}, nil
}

// TestGuardBudget: the keyframe's budget, not only the timeout, ends the
// wait; a call it cuts short is counted as too slow and counts towards the
// back-off; a keyframe whose budget is already spent is not even asked.
func TestGuardBudget(t *testing.T) {
	env := core.TestEnv("sr-enhancer")
	env.Clock = stagetest.NewFakeClock(time.Unix(1_700_000_000, 0))
	g := newGuard(env, time.Second, 10*time.Second, 3)
	sb := &sleepy{delay: 300 * time.Millisecond}
	g.setBackend(sb)
	in := &sr.Image{Width: 2, Height: 2, Format: "rgb24", Pix: make([]byte, 12)}
	slow := env.Metrics.Drop("backend_too_slow")

	if g.enhance(context.Background(), in, 2, time.Now().Add(-time.Millisecond)) != nil || sb.calls != 0 || slow.Value() != 1 {
		t.Fatalf("spent budget: calls %d, too slow %v", sb.calls, slow.Value())
	}
	start := time.Now()
	if g.enhance(context.Background(), in, 2, time.Now().Add(50*time.Millisecond)) != nil {
		t.Fatal("an answer past the budget was used")
	}
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Fatalf("waited %v past a 50 ms budget", d)
	}
	if sb.calls != 1 || slow.Value() != 2 || env.Metrics.Drop("backend_failure").Value() != 0 {
		t.Fatalf("calls %d, too slow %v", sb.calls, slow.Value())
	}
	if g.enhance(context.Background(), in, 2, time.Now().Add(time.Minute)) == nil { // the timeout (1 s) binds: it answers in 300 ms
		t.Fatal("an answer within budget and timeout was refused")
	}
	// Over-budget answers, not spent budgets, count towards the back-off.
	for range 2 {
		g.enhance(context.Background(), in, 2, time.Now().Add(-time.Millisecond))
	}
	for range 3 {
		g.enhance(context.Background(), in, 2, time.Now().Add(20*time.Millisecond))
	}
	calls := sb.calls
	if g.enhance(context.Background(), in, 2, time.Time{}) != nil || sb.calls != calls {
		t.Fatal("not left alone after 3 over-budget answers in a row")
	}
	if got := core.CounterValue(env.Metrics.Counter("backend_skipped")); got != 1 {
		t.Fatalf("backend_skipped = %v, want 1", got)
	}
}

// TestKeyBudget: a GOP's budgetShare from arrival; ffmpeg's start-up lag
// is forgiven at first and less and less after.
func TestKeyBudget(t *testing.T) {
	ms := int64(time.Millisecond)
	at := time.Unix(100, 0).UnixNano()
	for _, c := range []struct {
		name              string
		m                 frameMeta
		startLag, wantOff int64 // ms: the budget is wantOff after at
	}{
		{"unknown GOP", frameMeta{arrived: at}, 0, 800},
		{"2 s GOP", frameMeta{arrived: at, gopMs: 2000}, 0, 1600},
		{"first keyframe, slow start", frameMeta{arrived: at}, 700, 1500},
		{"a second later", frameMeta{arrived: at + 1000*ms, gopMs: 1000}, 700, 1000 + 200 + 800},
		{"start-up worked off", frameMeta{arrived: at + 2000*ms, gopMs: 1000}, 700, 2000 + 800},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := keyBudget(c.m, at, c.startLag*ms).Sub(time.Unix(0, at))
			if got != time.Duration(c.wantOff)*time.Millisecond {
				t.Fatalf("budget %v after arrival, want %d ms", got, c.wantOff)
			}
		})
	}
}
