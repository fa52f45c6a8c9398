package bridge

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/sr"
	"github.com/mediapipe/mediapipe/core/stagetest"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

func TestLoadDescribesSpec(t *testing.T) {
	def, err := load(t, bin(t, "stream-filter"))
	if err != nil {
		t.Fatal(err)
	}
	s := def.Spec
	if s.Name != "stream-filter" || s.In != core.KindFLV || s.Out != core.KindFLV {
		t.Fatalf("spec = %+v", s)
	}
	da := s.Param("drop_audio")
	if da == nil || da.Type != core.TypeBool || da.Default != "false" || da.Doc == "" {
		t.Fatalf("drop_audio = %+v", da)
	}
	if al := s.Param("allow"); al == nil || al.Type != core.TypeStringList {
		t.Fatalf("allow = %+v", al)
	}
	cases := []struct {
		raw  map[string]any
		want string // "" = valid
	}{
		{map[string]any{}, ""},
		{map[string]any{"drop_audio": true, "allow": []any{"live/*"}}, ""},
		{map[string]any{"plugin": "./stream-filter", "drop_audio": false}, ""},
		{map[string]any{"drop_audio": "yes"}, "drop_audio:"},
		{map[string]any{"dropaudio": true}, "dropaudio: unknown parameter"},
		{map[string]any{"allow": 3}, "allow:"},
		// The plugin's own Validate runs in the plugin.
		{map[string]any{"allow": []any{"live/*", "["}}, "allow: bad glob"},
	}
	for _, c := range cases {
		errs := def.Check(c.raw)
		if c.want == "" && len(errs) > 0 {
			t.Errorf("Check(%v) = %v, want no error", c.raw, errs)
		}
		if c.want != "" && (len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), c.want)) {
			t.Errorf("Check(%v) = %v, want one error starting %q", c.raw, errs, c.want)
		}
	}
	// And again when the stage opens, should Check have been skipped.
	st, err := def.Build(map[string]any{"allow": []any{"["}}, core.TestEnv("x"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.(core.Opener).Open(context.Background()); err == nil || !strings.Contains(err.Error(), "bad glob") {
		t.Fatalf("Open with a bad glob: %v", err)
	}
}

type sent struct {
	stream *core.Stream
	typ    uint8
	data   []byte
}

func TestStreamFilter(t *testing.T) {
	def, err := load(t, bin(t, "stream-filter"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name      string
		raw       map[string]any
		dropAudio bool
		allowed   []string
	}{
		{"defaults", map[string]any{}, false, []string{"live/a", "other/b"}},
		{"drop audio", map[string]any{"drop_audio": true}, true, []string{"live/a", "other/b"}},
		{"allow live", map[string]any{"allow": []any{"live/*"}}, false, []string{"live/a"}},
		{"both", map[string]any{"drop_audio": true, "allow": []any{"nothing/*", "other/?"}}, true, []string{"other/b"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sink := &logSink{}
			env := testEnv(sink)
			st, err := def.Build(c.raw, env)
			if err != nil {
				t.Fatal(err)
			}
			h := stagetest.Start(t, st, env, false)
			pid := st.(*Stage).PID()
			if !alive(pid) {
				t.Fatalf("plugin pid %d not running after Open", pid)
			}
			a := h.StartStream("live/a")
			b := h.StartStream("other/b")
			var want []sent
			for i := range 60 {
				for _, s := range []*core.Stream{a, b} {
					typ := []uint8{flv.TypeVideo, flv.TypeAudio, flv.TypeVideo, flv.TypeScript}[i%4]
					data := tag(typ, uint32(i*20), 100+i*13, i)
					h.SendData(s, typ, uint32(i*20), data)
					if slices.Contains(c.allowed, s.Name) && !(c.dropAudio && typ == flv.TypeAudio) {
						want = append(want, sent{s, typ, data})
					}
				}
			}
			h.EndStream(a)
			h.EndStream(b)
			if err := h.Close(); err != nil {
				t.Fatal(err)
			}
			got := h.Out.Packets()
			var data []stagetest.Captured
			var events []string
			for _, p := range got {
				if p.Event == core.EventData {
					data = append(data, p)
				} else {
					events = append(events, p.Event.String()+" "+p.Stream.Name)
				}
			}
			var wantEvents []string
			for _, ev := range []string{"start", "end"} {
				for _, n := range []string{"live/a", "other/b"} {
					if slices.Contains(c.allowed, n) {
						wantEvents = append(wantEvents, ev+" "+n)
					}
				}
			}
			if !slices.Equal(events, wantEvents) {
				t.Errorf("events = %q, want %q", events, wantEvents)
			}
			if len(data) != len(want) {
				t.Fatalf("got %d data packets, want %d", len(data), len(want))
			}
			for i, w := range want {
				g := data[i]
				if g.Stream != w.stream || g.Type != w.typ || !bytes.Equal(g.Data, w.data) {
					t.Fatalf("packet %d = %s type %d %d bytes, want %s type %d %d bytes (byte-identical)",
						i, g.Stream.Name, g.Type, len(g.Data), w.stream.Name, w.typ, len(w.data))
				}
			}
			waitGone(t, pid)
			found := false
			for _, r := range sink.all() {
				if strings.Contains(r, "stage open") && strings.Contains(r, "plugin=stream-filter") {
					found = true
				}
			}
			if !found {
				t.Errorf("the plugin's log line did not reach the host log: %q", sink.all())
			}
		})
	}
}

func TestInitTagsCrossTheBridge(t *testing.T) {
	def, err := load(t, bin(t, "stream-filter"))
	if err != nil {
		t.Fatal(err)
	}
	env := testEnv(nil)
	st, err := def.Build(map[string]any{}, env)
	if err != nil {
		t.Fatal(err)
	}
	h := stagetest.Start(t, st, env, false)
	s := core.NewStream("live/init")
	init1 := &core.InitTags{Metadata: tag(flv.TypeScript, 0, 30, 1), Video: tag(flv.TypeVideo, 0, 40, 2)}
	s.SetInit(init1)
	h.Send(core.NewEvent(core.EventStart, s))
	h.SendData(s, flv.TypeVideo, 0, tag(flv.TypeVideo, 0, 50, 3))
	h.Out.WaitData(1, 10*time.Second)
	if got := s.Init(); !bytes.Equal(got.Video, init1.Video) || !bytes.Equal(got.Metadata, init1.Metadata) {
		t.Fatalf("init after the round trip = %+v", got)
	}
	h.EndStream(s)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}

	// A stage's change of the init tags comes back: stream-filter with
	// drop_audio removes the AAC sequence header.
	st, err = def.Build(map[string]any{"drop_audio": true}, env)
	if err != nil {
		t.Fatal(err)
	}
	h = stagetest.Start(t, st, env, false)
	s = core.NewStream("live/init2")
	s.SetInit(&core.InitTags{Video: tag(flv.TypeVideo, 0, 40, 2), Audio: tag(flv.TypeAudio, 0, 4, 3)})
	h.Send(core.NewEvent(core.EventStart, s))
	h.SendData(s, flv.TypeVideo, 0, tag(flv.TypeVideo, 0, 50, 3))
	h.Out.WaitData(1, 10*time.Second)
	if got := s.Init(); got == nil || got.Audio != nil || got.Video == nil {
		t.Fatalf("init after drop_audio = %+v, want video only", got)
	}
	h.EndStream(s)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestKillRestartsAndStreamGoesOn(t *testing.T) {
	stage, h, env := startStage(t, bin(t, "stream-filter"), map[string]any{"drop_audio": true}, false)
	s := h.StartStream("live/movie")
	feed := &videoFeed{h: h, s: s, size: 200}
	feed.send(10)
	h.Out.WaitData(10, 10*time.Second)
	if n := len(h.Out.Data()); n != 10 {
		t.Fatalf("before the kill: %d packets, want 10", n)
	}
	pid := stage.PID()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	restarts := env.Metrics.Counter("restarts")
	// Keep the stream going until the restarted plugin passes packets again.
	testrun.Eventually(t, 10*time.Second, "the plugin to restart", func() bool {
		feed.send(1)
		return core.CounterValue(restarts) >= 1 && stage.PID() != pid && stage.PID() != 0
	})
	mark := feed.next
	feed.send(20)
	// The 20 packets sent after the restart all come through, in order, last.
	lastTag := tag(flv.TypeVideo, uint32(mark+19), 200, mark+19)
	testrun.Eventually(t, 10*time.Second, "the packets sent after the restart", func() bool {
		d := h.Out.Data()
		return len(d) > 0 && bytes.Equal(d[len(d)-1].Data, lastTag)
	})
	got := h.Out.Data()
	if len(got) < 20 {
		t.Fatalf("%d packets in all", len(got))
	}
	for i, p := range got[len(got)-20:] {
		if p.Stream != s || !bytes.Equal(p.Data, tag(flv.TypeVideo, uint32(mark+i), 200, mark+i)) {
			t.Fatalf("packet %d after the restart is not the one sent", i)
		}
	}
	waitGone(t, pid)
	newPID := stage.PID()
	h.EndStream(s)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	var starts, ends int
	for _, p := range h.Out.Packets() {
		switch p.Event {
		case core.EventStart:
			starts++
		case core.EventEnd:
			ends++
		}
	}
	if starts != 1 || ends != 1 {
		t.Errorf("downstream saw %d starts and %d ends, want 1 and 1", starts, ends)
	}
	if v := core.CounterValue(restarts); v != 1 {
		t.Errorf("restarts = %v, want 1", v)
	}
	waitGone(t, newPID)
}

func TestBadPlugins(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if err := os.Mkdir(filepath.Join(dir, "adir"), 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "nope"), "no such file"},
		{"directory", filepath.Join(dir, "adir"), "is a directory"},
		{"not executable", write("plain", "#!/bin/sh\n", 0o644), "not executable"},
		{"/bin/true", "/bin/true", "not a mediapipe plugin"},
		{"script", write("script.sh", "#!/bin/sh\necho hello\necho oops >&2\n", 0o755), "not a mediapipe plugin"},
		{"garbage binary", write("garbage", "\x7fELF nonsense", 0o755), "plugin"},
		{"other protocol version", bin(t, "otherversion"), "protocol version 2"},
		{"sr backend as stage", bin(t, "sr-sharpen"), "is an SR backend plugin, not a stage"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(c.path)
			if err == nil {
				t.Fatal("loaded")
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") || !strings.Contains(msg, c.path) || !strings.Contains(msg, c.want) {
				t.Errorf("error = %q, want one line naming %s and saying %q", msg, c.path, c.want)
			}
		})
	}
	t.Run("stage as sr backend", func(t *testing.T) {
		_, err := OpenSRBackend(bin(t, "stream-filter"))
		if err == nil || !strings.Contains(err.Error(), "is a stage plugin, not an SR backend") {
			t.Errorf("error = %v", err)
		}
	})
	noneLive(t, "failed loads")
}

func TestShutdownWithoutRun(t *testing.T) {
	def, err := load(t, bin(t, "stream-filter"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := def.Build(map[string]any{}, testEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := st.(core.Opener).Open(ctx); err != nil {
		t.Fatal(err)
	}
	pid := st.(*Stage).PID()
	if !alive(pid) {
		t.Fatal("not started")
	}
	cancel() // the pipeline failed to start: Run never comes
	waitGone(t, pid)
}

// TestScan: stage, SR backend and policy plugins are told apart; a file that is no
// program is passed over, a program that is no plugin is a problem.
func TestScan(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"stream-filter", "sr-sharpen", "policy-worst-loss"} {
		copyBin(t, dir, n)
	}
	_ = os.WriteFile(filepath.Join(dir, "README"), []byte("not a program"), 0o644)
	_ = os.WriteFile(filepath.Join(dir, "tool.sh"), []byte("#!/bin/sh\nexit 0\n"), 0o755)
	found, err := Scan(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(found.Stages) != 1 || found.Stages[0].Spec.Name != "stream-filter" {
		t.Errorf("stages = %v", found.Stages)
	}
	if len(found.SRBackends) != 1 || found.SRBackends[0].Path != filepath.Join(dir, "sr-sharpen") {
		t.Errorf("sr backends = %v", found.SRBackends)
	}
	if len(found.Policies) != 1 || found.Policies[0].Spec.Name != "policy-worst-loss" {
		t.Errorf("policies = %v", found.Policies)
	}
	if errs := found.Problems; len(errs) != 1 || !strings.Contains(errs[0].Error(), "tool.sh") {
		t.Errorf("problems = %v", errs)
	}
	if _, err := Scan(filepath.Join(dir, "missing")); err == nil {
		t.Error("Scan of a missing directory: no error")
	}
}

func TestSRSharpen(t *testing.T) {
	b, err := sr.OpenPlugin(bin(t, "sr-sharpen"))
	if err != nil {
		t.Fatal(err)
	}
	pid := b.(*SRBackend).PID()
	in := &sr.Image{Width: 64, Height: 36, Format: "rgb24", Pix: make([]byte, 64*36*3)}
	for i := range in.Pix {
		in.Pix[i] = byte(i * 31)
	}
	for _, scale := range []int{1, 2, 3} {
		out, err := b.Enhance(context.Background(), in, scale)
		if err != nil {
			t.Fatal(err)
		}
		if out.Width != 64*scale || out.Height != 36*scale || out.Format != "rgb24" || len(out.Pix) != out.Width*out.Height*3 {
			t.Fatalf("scale %d: %dx%d %s %d bytes", scale, out.Width, out.Height, out.Format, len(out.Pix))
		}
	}
	// A 1280×720 picture is larger than gRPC's default 4 MB once scaled.
	big := &sr.Image{Width: 1280, Height: 720, Format: "bgr24", Pix: make([]byte, 1280*720*3)}
	out, err := b.Enhance(context.Background(), big, 2)
	if err != nil {
		t.Fatal(err)
	}
	if out.Width != 2560 || out.Height != 1440 {
		t.Fatalf("big: %dx%d", out.Width, out.Height)
	}
	// Killed, the backend is started again by the next call.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid)
	testrun.Eventually(t, 10*time.Second, "the SR plugin to be seen dead", func() bool { return b.(*SRBackend).proc.exited() })
	if _, err := b.Enhance(context.Background(), in, 2); err != nil {
		t.Fatalf("after a kill: %v", err)
	}
	pid = b.(*SRBackend).PID()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid)
	if _, err := b.Enhance(context.Background(), in, 2); err == nil {
		t.Error("Enhance after Close succeeded")
	}
}

func TestSourcePlugin(t *testing.T) {
	def, err := load(t, bin(t, "source"))
	if err != nil {
		t.Fatal(err)
	}
	if !def.Spec.IsSource() || def.Spec.Out != core.KindFLV {
		t.Fatalf("spec = %+v", def.Spec)
	}
	env := testEnv(nil)
	st, err := def.Build(map[string]any{"name": "src/one", "count": 7}, env)
	if err != nil {
		t.Fatal(err)
	}
	stage := st.(*Stage)
	h := stagetest.Start(t, st, env, true)
	got := h.Out.WaitData(7, 10*time.Second)
	if len(got) != 7 || got[0].Stream.Name != "src/one" || got[0].Stream.Init() == nil {
		t.Fatalf("got %d packets", len(got))
	}
	// Killed, the source comes back and opens its stream again under the
	// same name within the restart grace: downstream it is the same stream,
	// never ended.
	pid := stage.PID()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	got = h.Out.WaitData(14, 10*time.Second)
	if len(got) != 14 {
		t.Fatalf("after the restart: %d packets, want 14", len(got))
	}
	if got[7].Stream != got[0].Stream {
		t.Errorf("the restarted source's packets went to a new stream: the old one was not re-attached")
	}
	newPID := stage.PID()
	if err := h.Close(); err != nil { // cancels the source
		t.Fatal(err)
	}
	var events []string
	for _, p := range h.Out.Packets() {
		if p.Event != core.EventData {
			events = append(events, p.Event.String())
		}
	}
	if strings.Join(events, ",") != "start,end" {
		t.Errorf("events = %q", events)
	}
	waitGone(t, pid)
	waitGone(t, newPID)
}

// TestStreamEndsWhileDown: a stream that ends while the plugin cannot be
// restarted is still ended downstream, and its data counted as dropped.
func TestStreamEndsWhileDown(t *testing.T) {
	path := copyBin(t, t.TempDir(), "stream-filter")
	stage, h, env := startStage(t, path, map[string]any{}, false)
	s := h.StartStream("live/x")
	h.SendData(s, flv.TypeVideo, 0, tag(flv.TypeVideo, 0, 10, 1))
	h.Out.WaitData(1, 10*time.Second)
	// Replace the program with one that cannot start, then kill the plugin.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	pid := stage.PID()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testrun.Eventually(t, 10*time.Second, "the bridge to see the plugin dead", func() bool { return stage.PID() != pid })
	down := env.Metrics.Drop("plugin_down")
	testrun.Eventually(t, 10*time.Second, "data to be dropped while down", func() bool {
		h.SendData(s, flv.TypeVideo, 0, tag(flv.TypeVideo, 0, 10, 2))
		return down.Value() > 0
	})
	h.EndStream(s)
	testrun.Eventually(t, 10*time.Second, "the end downstream", func() bool {
		ps := h.Out.Packets()
		return len(ps) > 0 && ps[len(ps)-1].Event == core.EventEnd && ps[len(ps)-1].Stream == s
	})
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid)
}

// TestInFlightCountedOnDeath: the packets a plugin had taken but not passed
// on when it was killed are counted as dropped, exactly: every data packet
// sent is either delivered or counted.
func TestInFlightCountedOnDeath(t *testing.T) {
	stage, h, env := startStage(t, bin(t, "slow"), map[string]any{"delay": "5ms"}, false)
	s := h.StartStream("live/slow")
	feed := &videoFeed{h: h, s: s, size: 100}
	feed.send(200) // a second's work for the plugin: most of it waits inside
	h.Out.WaitData(20, 10*time.Second)
	pid := stage.PID()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testrun.Eventually(t, 10*time.Second, "the plugin to restart", func() bool { return stage.PID() != pid && stage.PID() != 0 })
	feed.send(10)
	seq := feed.next
	last := tag(flv.TypeVideo, uint32(seq-1), 100, seq-1)
	testrun.Eventually(t, 10*time.Second, "the packets sent after the restart", func() bool {
		d := h.Out.Data()
		return len(d) > 0 && bytes.Equal(d[len(d)-1].Data, last)
	})
	h.EndStream(s)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	out := len(h.Out.Data())
	died := env.Metrics.Drop("plugin_died").Value()
	down := env.Metrics.Drop("plugin_down").Value()
	t.Logf("sent %d: %d out, %v plugin_died, %v plugin_down", seq, out, died, down)
	if died < 100 || out+int(died)+int(down) != seq {
		t.Errorf("sent %d: %d out, %v counted plugin_died, %v plugin_down; want every packet delivered or counted, most of them died",
			seq, out, died, down)
	}
	// What came out is what was sent, in order, with one gap at the kill.
	gaps, next := 0, 0
	for _, p := range h.Out.Data() {
		i := int(p.Timestamp)
		if i != next {
			gaps++
		}
		if i < next || !bytes.Equal(p.Data, tag(flv.TypeVideo, uint32(i), 100, i)) {
			t.Fatalf("packet ts %d out of order or not the one sent", i)
		}
		next = i + 1
	}
	if gaps != 1 {
		t.Errorf("%d gaps in the output, want the one at the kill", gaps)
	}
}

// TestFilteredNotCountedAsDied: packets a plugin drops on purpose are not
// counted as lost when it dies later (it reports them consumed while idle).
func TestFilteredNotCountedAsDied(t *testing.T) {
	stage, h, env := startStage(t, bin(t, "stream-filter"), map[string]any{"allow": []any{"live/*"}}, false)
	s := h.StartStream("other/denied")
	(&videoFeed{h: h, s: s, size: 100}).send(100)
	time.Sleep(10 * ackEvery()) // the plugin filters them all and goes idle
	pid := stage.PID()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testrun.Eventually(t, 10*time.Second, "the plugin to restart", func() bool { return stage.PID() != pid && stage.PID() != 0 })
	h.EndStream(s)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(h.Out.Packets()); n != 0 {
		t.Errorf("%d packets out of a denied stream", n)
	}
	if died := env.Metrics.Drop("plugin_died").Value(); died != 0 {
		t.Errorf("plugin_died = %v for packets the plugin had filtered out before it died", died)
	}
}

// ackEvery is the SDK's idle report interval (plugins/sdk ackEvery).
func ackEvery() time.Duration { return 50 * time.Millisecond }

// TestSRBackendRestartBackoff: a dead SR plugin is started again by the next
// call, but no sooner than the back-off after the previous start, and the
// restarts are counted in the instrumenting stage's metrics.
func TestSRBackendRestartBackoff(t *testing.T) {
	b, err := OpenSRBackend(bin(t, "sr-sharpen"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	sb := b.(*SRBackend)
	env := core.TestEnv("sr-enhancer")
	sb.Instrument(env.Metrics, nil)
	restarts := env.Metrics.Counter(SRBackendCounter)
	clock := time.Unix(1_700_000_000, 0)
	sb.mu.Lock()
	sb.now = func() time.Time { return clock }
	sb.started = clock
	sb.mu.Unlock()
	in := &sr.Image{Width: 8, Height: 8, Format: "rgb24", Pix: make([]byte, 8*8*3)}
	kill := func() {
		t.Helper()
		pid := sb.PID()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		testrun.Eventually(t, 10*time.Second, "the SR plugin to be seen dead", func() bool {
			sb.mu.Lock()
			defer sb.mu.Unlock()
			return sb.proc.exited()
		})
	}
	steps := []struct {
		advance  time.Duration
		ok       bool
		restarts float64
	}{
		{10 * time.Millisecond, false, 0}, // died 10 ms after its start: wait 50 ms
		{40 * time.Millisecond, true, 1},  // 50 ms after the start
		{0, true, 1},                      // running
	}
	kill()
	for i, s := range steps {
		clock = clock.Add(s.advance)
		_, err := b.Enhance(context.Background(), in, 2)
		if (err == nil) != s.ok || core.CounterValue(restarts) != s.restarts {
			t.Fatalf("step %d: err = %v, restarts = %v; want ok %v, restarts %v", i, err, core.CounterValue(restarts), s.ok, s.restarts)
		}
		if !s.ok && !strings.Contains(err.Error(), "down, next start in") {
			t.Fatalf("step %d: err = %v", i, err)
		}
	}
	// Died young again: the wait has doubled to 100 ms after that start.
	kill()
	for i, s := range []struct {
		advance  time.Duration
		ok       bool
		restarts float64
	}{{60 * time.Millisecond, false, 1}, {39 * time.Millisecond, false, 1}, {time.Millisecond, true, 2}} {
		clock = clock.Add(s.advance)
		_, err := b.Enhance(context.Background(), in, 2)
		if (err == nil) != s.ok || core.CounterValue(restarts) != s.restarts {
			t.Fatalf("second death, step %d: err = %v, restarts = %v; want ok %v, restarts %v", i, err, core.CounterValue(restarts), s.ok, s.restarts)
		}
	}
	// One that ran long enough resets the wait: restarted at once.
	clock = clock.Add(stableAfter + time.Second)
	kill()
	if _, err := b.Enhance(context.Background(), in, 2); err != nil || core.CounterValue(restarts) != 3 {
		t.Fatalf("after a long run: err = %v, restarts = %v", err, core.CounterValue(restarts))
	}
}

// TestHandshakeTimeout: a program that never answers the handshake fails
// with a timeout, not "not a plugin", within StartTimeout, even through a
// shell wrapper whose child holds its output open; and the child is gone.
func TestHandshakeTimeout(t *testing.T) {
	old := StartTimeout
	StartTimeout = time.Second
	defer func() { StartTimeout = old }()
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	path := filepath.Join(dir, "hang.sh")
	script := "#!/bin/sh\nsleep 40 &\necho $! > " + pidFile + "\nwait\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	_, err := Load(path)
	took := time.Since(began)
	if err == nil {
		t.Fatal("loaded")
	}
	t.Logf("failed after %v: %v", took.Round(time.Millisecond), err)
	msg := err.Error()
	if strings.Contains(msg, "\n") || !strings.Contains(msg, path) || !strings.Contains(msg, "timed out") {
		t.Errorf("error = %q, want one line naming %s and saying it timed out", msg, path)
	}
	if took > 4*time.Second {
		t.Errorf("Load took %v with a 1 s start timeout", took)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	var child int
	if _, err := fmt.Sscan(string(b), &child); err != nil {
		t.Fatal(err)
	}
	waitGone(t, child)
}

// TestHeldStreamEndsAfterGrace: a stream a plugin made is held open across
// the plugin's death, and ended downstream once the restart grace passes
// without a process starting it again; the log names it.
func TestHeldStreamEndsAfterGrace(t *testing.T) {
	path := copyBin(t, t.TempDir(), "source")
	const grace = time.Second
	def, err := LoadWith(path, Options{RestartGrace: grace})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(def.Close)
	sink := &logSink{}
	env := testEnv(sink)
	st, err := def.Build(map[string]any{"name": "src/held", "count": 3}, env)
	if err != nil {
		t.Fatal(err)
	}
	stage := st.(*Stage)
	h := stagetest.Start(t, st, env, true)
	h.Out.WaitData(3, 10*time.Second)
	// Replace the program with one that cannot start, then kill the plugin.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	pid := stage.PID()
	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testrun.Eventually(t, 10*time.Second, "the bridge to see the plugin dead", func() bool { return stage.PID() != pid })
	ended := func() bool {
		ps := h.Out.Packets()
		return len(ps) > 0 && ps[len(ps)-1].Event == core.EventEnd && ps[len(ps)-1].Stream.Name == "src/held"
	}
	if ended() {
		t.Fatal("the stream ended at the plugin's death, not after the grace")
	}
	testrun.Eventually(t, 10*time.Second, "the held stream to end", ended)
	// Seen ended no sooner than the grace after the kill: it was held.
	if d := time.Since(killed); d < grace {
		t.Errorf("ended %v after the kill, before the grace of %v", d, grace)
	}
	var logged bool
	for _, line := range sink.all() {
		logged = logged || strings.Contains(line, "did not start its streams again") && strings.Contains(line, "src/held")
	}
	if !logged {
		t.Errorf("no log line names the ended stream:\n%s", strings.Join(sink.all(), "\n"))
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid)
}

// TestRenamedInPlaceIsReported: a plugin that sets Stream.Name on a stream
// it was given gets an error in the log, once, and its data of that stream
// is dropped and counted (renamed_in_place) instead of passing on silently
// under the old name.
func TestRenamedInPlaceIsReported(t *testing.T) {
	def, err := load(t, bin(t, "inplace"))
	if err != nil {
		t.Fatal(err)
	}
	sink := &logSink{}
	env := testEnv(sink)
	st, err := def.Build(map[string]any{}, env)
	if err != nil {
		t.Fatal(err)
	}
	h := stagetest.Start(t, st, env, false)
	s := h.StartStream("live/x")
	for i := range 5 {
		h.SendData(s, flv.TypeVideo, uint32(i), tag(flv.TypeVideo, uint32(i), 10, i))
	}
	dropped := env.Metrics.Drop("renamed_in_place")
	testrun.Eventually(t, 10*time.Second, "the renamed stream's data counted", func() bool { return dropped.Value() == 5 })
	if n := len(h.Out.Data()); n != 0 {
		t.Errorf("%d data packets passed under the old name", n)
	}
	var errs int
	for _, line := range sink.all() {
		if strings.HasPrefix(line, "ERROR plugin renamed a stream in place") && strings.Contains(line, "renamed_to=renamed/live/x") {
			errs++
		}
	}
	if errs != 1 {
		t.Errorf("%d error lines for the rename, want 1:\n%s", errs, strings.Join(sink.all(), "\n"))
	}
	h.EndStream(s)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
}
