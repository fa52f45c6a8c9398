package host_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/host"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// tickSource opens one stream and emits a numbered packet every
// millisecond until stopped, then ends the stream. builds counts how often
// a tick source was built, so a test sees whether its pipeline restarted.
type tickSource struct{ name string }

func (s tickSource) Run(ctx context.Context, _ <-chan *core.Packet, out core.Output) error {
	stream := core.NewStream(s.name)
	out.Emit(core.NewEvent(core.EventStart, stream))
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for seq := uint32(0); ; seq++ {
		select {
		case <-ctx.Done():
			out.Emit(core.NewEvent(core.EventEnd, stream))
			return nil
		case <-t.C:
		}
		p := core.NewPacket(4)
		binary.BigEndian.PutUint32(p.Data, seq)
		p.Stream = stream
		out.Emit(p)
	}
}

type tickConfig struct {
	Stream string `param:"stream" required:"true" doc:"stream name"`
}

// keyConfig has one live parameter and one that is not.
type keyConfig struct {
	Key  string `param:"key" live:"true" doc:"applied in place"`
	Mode string `param:"mode" default:"a" doc:"needs a restart"`
}

// keyStage passes packets on and keeps the key it was last given.
type keyStage struct{ key atomic.Pointer[string] }

func (s *keyStage) Run(ctx context.Context, in <-chan *core.Packet, out core.Output) error {
	for p := range in {
		out.Emit(p)
	}
	return nil
}

func (s *keyStage) Reconfigure(c *keyConfig) error {
	if c.Key == "refuse" {
		return errors.New("cannot take that key in place")
	}
	s.key.Store(&c.Key)
	return nil
}

// seqLog records, per sink, the events and sequence numbers it received.
type seqLog struct {
	mu  sync.Mutex
	got map[string][]string
}

func (l *seqLog) add(sink string, p *core.Packet) {
	e := p.Event.String() + " " + p.Stream.Name
	if p.Event == core.EventData {
		e = fmt.Sprint(binary.BigEndian.Uint32(p.Data))
	}
	l.mu.Lock()
	l.got[sink] = append(l.got[sink], e)
	l.mu.Unlock()
}

func (l *seqLog) get(sink string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.got[sink])
}

// gapless says whether sink's packets after its first start are one run of
// consecutive numbers with no restart.
func (l *seqLog) gapless(sink string) error {
	got := l.get(sink)
	starts, prev := 0, -1
	for i, e := range got {
		if strings.HasPrefix(e, "start") {
			starts++
			continue
		}
		if strings.HasPrefix(e, "end") {
			return fmt.Errorf("%s: stream ended at entry %d", sink, i)
		}
		var n int
		fmt.Sscan(e, &n)
		if prev >= 0 && n != prev+1 {
			return fmt.Errorf("%s: %d follows %d", sink, n, prev)
		}
		prev = n
	}
	if starts != 1 {
		return fmt.Errorf("%s: %d starts, want 1", sink, starts)
	}
	return nil
}

type seqSink struct {
	log  *seqLog
	name string
}

func (s seqSink) Run(ctx context.Context, in <-chan *core.Packet, _ core.Output) error {
	for p := range in {
		s.log.add(s.name, p)
		p.Release()
	}
	return nil
}

// reloadRig runs a file built from a registry of tick, key, pass and sink
// stages; set swaps the file the next reload reads.
type reloadRig struct {
	rt     *host.Runtime
	log    *seqLog
	builds atomic.Int32 // tick sources built
	keys   []*keyStage
	mu     sync.Mutex
	file   string
	m      *core.Metrics
	cancel context.CancelFunc
	done   chan error
}

func newReloadRig(t *testing.T, file string) *reloadRig {
	t.Helper()
	r := &reloadRig{log: &seqLog{got: map[string][]string{}}, file: file, m: core.NewMetrics()}
	reg := core.NewRegistry()
	for _, err := range []error{
		reg.Add(core.Define(core.Spec{Name: "tick", Out: core.KindFLV},
			func(c *tickConfig, env *core.Env) (core.Stage, error) {
				r.builds.Add(1)
				return tickSource{c.Stream}, nil
			})),
		reg.Add(core.Define(core.Spec{Name: "key", In: core.KindFLV, Out: core.KindFLV},
			func(c *keyConfig, env *core.Env) (core.Stage, error) {
				s := &keyStage{}
				s.key.Store(&c.Key)
				r.mu.Lock()
				r.keys = append(r.keys, s)
				r.mu.Unlock()
				return s, nil
			})),
		reg.Add(core.Define(core.Spec{Name: "sink", In: core.KindFLV},
			func(c *sinkConfig, env *core.Env) (core.Stage, error) { return seqSink{r.log, c.Listen}, nil })),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	read := func() (*host.File, error) {
		r.mu.Lock()
		data := r.file
		r.mu.Unlock()
		return host.Load("t.toml", ".", []byte(data), nil, reg)
	}
	f, err := read()
	if err != nil {
		t.Fatal(err)
	}
	r.rt, err = host.Build(f, host.Options{Metrics: r.m, Reload: read, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan error, 1)
	go func() { r.done <- r.rt.Run(ctx) }()
	testrun.Within(t, r.rt.Ready(), 5*time.Second, "runtime ready")
	t.Cleanup(func() {
		r.cancel()
		if err := testrun.Within(t, r.done, 10*time.Second, "run to stop"); err != nil {
			t.Errorf("run: %v", err)
		}
		r.rt.Config().Close()
	})
	return r
}

func (r *reloadRig) set(file string) {
	r.mu.Lock()
	r.file = file
	r.mu.Unlock()
}

// packets waits until sink has received n more packets than now.
func (r *reloadRig) more(t *testing.T, sink string, n int) {
	t.Helper()
	base := len(r.log.get(sink))
	testrun.Eventually(t, 5*time.Second, fmt.Sprintf("%s to receive %d more packets", sink, n), func() bool {
		return len(r.log.get(sink)) >= base+n
	})
}

func pipe(name, stream, key, mode string) string {
	return fmt.Sprintf(`
[[pipeline]]
name = %q
  [[pipeline.stage]]
  use = "tick"
  stream = %q
  [[pipeline.stage]]
  use = "key"
  key = %q
  mode = %q
  [[pipeline.stage]]
  use = "sink"
  listen = %q
`, name, stream, key, mode, name)
}

// A reload leaves an unchanged pipeline running, applies a live parameter
// in place without a restart, starts an added pipeline, restarts one whose
// other parameters changed and stops a removed one, ending its stream.
func TestReloadPipelineByPipeline(t *testing.T) {
	r := newReloadRig(t, pipe("one", "live/one", "k1", "a")+pipe("two", "live/two", "k1", "a"))
	r.more(t, "one", 50)

	r.set(pipe("one", "live/one", "k2", "a") + pipe("two", "live/two", "k1", "a") + pipe("three", "live/three", "k1", "a"))
	res, err := r.rt.Reload(context.Background())
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	if !slices.Equal(res.Added, []string{"three"}) || len(res.Restarted)+len(res.Removed) != 0 ||
		!slices.Equal(res.Changed, []string{"one stage 2 (key): key"}) || !slices.Equal(res.Unchanged, []string{"two"}) {
		t.Fatalf("reload did %+v", res)
	}
	if got := *r.keys[0].key.Load(); got != "k2" {
		t.Errorf("pipeline one's key stage has key %q after the reload, want k2 applied in place", got)
	}
	r.more(t, "three", 50)
	r.more(t, "one", 50)
	if b := r.builds.Load(); b != 3 {
		t.Errorf("%d tick sources built, want 3: only the added pipeline's is new", b)
	}
	for _, sink := range []string{"one", "two"} {
		if err := r.log.gapless(sink); err != nil {
			t.Errorf("kept pipeline across the reload: %v", err)
		}
	}

	// two's mode is not live: two restarts; three goes.
	r.set(pipe("one", "live/one", "k2", "a") + pipe("two", "live/two", "k1", "b"))
	res, err = r.rt.Reload(context.Background())
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	if !slices.Equal(res.Restarted, []string{"two"}) || !slices.Equal(res.Removed, []string{"three"}) || !slices.Equal(res.Unchanged, []string{"one"}) {
		t.Fatalf("reload did %+v", res)
	}
	if got := r.log.get("three"); got[len(got)-1] != "end live/three" {
		t.Errorf("removed pipeline's sink last saw %q, want its stream's end", got[len(got)-1])
	}
	r.more(t, "two", 20)
	if got := r.log.get("two"); !slices.Contains(got, "end live/two") || strings.Count(strings.Join(got, "\n"), "start live/two") != 2 {
		t.Errorf("restarted pipeline's sink should see its stream end and start again")
	}
	if err := r.log.gapless("one"); err != nil {
		t.Errorf("unchanged pipeline across two reloads: %v", err)
	}
	if n := len(r.rt.Running()); n != 2 {
		t.Errorf("%d pipelines running, want 2", n)
	}
	if v := core.CounterValue(r.m.Reload("ok")); v != 2 {
		t.Errorf("reloads ok = %v, want 2", v)
	}
	if got := r.rt.CounterSum("mediapipe_stage_packets_in_total", map[string]string{"pipeline": "three"}); got != 0 {
		t.Errorf("removed pipeline still has series in /metrics (%v packets)", got)
	}
}

// A file with problems is refused whole: every problem is returned, the
// failure is counted and nothing running changes.
func TestReloadRefusesBrokenFile(t *testing.T) {
	r := newReloadRig(t, pipe("one", "live/one", "k1", "a"))
	r.more(t, "one", 20)
	r.set(pipe("one", "live/one", "k2", "a") + `
[[pipeline]]
name = "two"
  [[pipeline.stage]]
  use = "nosuch"
  [[pipeline.stage]]
  use = "sink"
`)
	res, err := r.rt.Reload(context.Background())
	if !errors.Is(err, host.ErrReloadRefused) {
		t.Fatalf("reload of a broken file: err %v, want ErrReloadRefused", err)
	}
	if len(res.Problems) != 2 || !strings.Contains(res.Problems[0]+res.Problems[1], `unknown stage "nosuch"`) ||
		!strings.Contains(res.Problems[0]+res.Problems[1], "listen") {
		t.Errorf("problems %q, want the unknown stage and the missing listen", res.Problems)
	}
	if got := *r.keys[0].key.Load(); got != "k1" {
		t.Errorf("a refused reload changed the key to %q", got)
	}
	if v := core.CounterValue(r.m.Reload("refused")); v != 1 {
		t.Errorf("refused reloads = %v, want 1", v)
	}
	if v := core.GaugeValue(r.m.ReloadOK); v != 0 {
		t.Errorf("last reload successful = %v after a refusal", v)
	}
	r.more(t, "one", 20)
	if err := r.log.gapless("one"); err != nil {
		t.Error(err)
	}
}

// A stage that cannot apply its live change in place has its pipeline
// restarted with the new parameters instead.
func TestReloadRestartsWhenInPlaceFails(t *testing.T) {
	r := newReloadRig(t, pipe("one", "live/one", "k1", "a"))
	r.more(t, "one", 20)
	r.set(pipe("one", "live/one", "refuse", "a"))
	res, err := r.rt.Reload(context.Background())
	if err != nil || !slices.Equal(res.Restarted, []string{"one"}) || len(res.Changed) != 0 {
		t.Fatalf("reload: %+v, %v; want one restarted", res, err)
	}
	r.mu.Lock()
	last := r.keys[len(r.keys)-1]
	r.mu.Unlock()
	if got := *last.key.Load(); got != "refuse" || len(r.keys) != 2 {
		t.Errorf("restarted pipeline's key %q (%d key stages built)", got, len(r.keys))
	}
}

func branchPipes(withBranch bool, mainKey string) string {
	s := `
[[pipeline]]
name = "main"
  [[pipeline.stage]]
  use = "tick"
  stream = "live/main"
  [[pipeline.stage]]
  use = "key"
  key = "` + mainKey + `"
  id = "mid"
  [[pipeline.stage]]
  use = "sink"
  listen = "main"
`
	if withBranch {
		s += `
[[pipeline]]
name = "tap"
from = "mid"
  [[pipeline.stage]]
  use = "sink"
  listen = "tap"
`
	}
	return s
}

// A branch added while its tap runs gets a start for the stream already
// live there and then its packets; removed, it gets the stream's end; the
// tapped pipeline runs on without a gap through both.
func TestReloadAddsAndRemovesBranch(t *testing.T) {
	r := newReloadRig(t, branchPipes(false, "k"))
	r.more(t, "main", 30)
	r.set(branchPipes(true, "k"))
	if res, err := r.rt.Reload(context.Background()); err != nil || !slices.Equal(res.Added, []string{"tap"}) {
		t.Fatalf("reload: %+v, %v", res, err)
	}
	r.more(t, "tap", 30)
	if got := r.log.get("tap"); got[0] != "start live/main" {
		t.Errorf("branch added mid-stream first saw %q, want the stream's start", got[0])
	}
	if err := r.log.gapless("tap"); err != nil {
		t.Error(err)
	}
	r.set(branchPipes(false, "k"))
	if res, err := r.rt.Reload(context.Background()); err != nil || !slices.Equal(res.Removed, []string{"tap"}) {
		t.Fatalf("reload: %+v, %v", res, err)
	}
	if got := r.log.get("tap"); got[len(got)-1] != "end live/main" {
		t.Errorf("removed branch last saw %q, want the stream's end", got[len(got)-1])
	}
	r.more(t, "main", 30)
	if err := r.log.gapless("main"); err != nil {
		t.Errorf("tapped pipeline across adding and removing a branch: %v", err)
	}
}

// A branch off a pipeline that restarts restarts with it, and sees the new
// stream.
func TestReloadRestartsBranchWithItsTap(t *testing.T) {
	r := newReloadRig(t, branchPipes(true, "k"))
	r.more(t, "tap", 30)
	r.set(strings.Replace(branchPipes(true, "k"), `stream = "live/main"`, `stream = "live/other"`, 1))
	res, err := r.rt.Reload(context.Background())
	if err != nil || !slices.Equal(res.Restarted, []string{"main", "tap"}) {
		t.Fatalf("reload: %+v, %v; want main and tap restarted", res, err)
	}
	r.more(t, "tap", 30)
	if got := r.log.get("tap"); !slices.Contains(got, "start live/other") {
		t.Errorf("restarted branch never saw the new stream")
	}
}

// POST /api/reload answers with what the reload did, or 422 and the
// problems of a file it refused.
func TestReloadOverAdminAPI(t *testing.T) {
	admin := "[admin]\nlisten = \"127.0.0.1:0\"\n"
	r := newReloadRig(t, admin+pipe("one", "live/one", "k1", "a"))
	url := "http://" + r.rt.AdminAddr.String() + "/api/reload"
	post := func() (int, host.ReloadResult) {
		t.Helper()
		resp, err := http.Post(url, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var res host.ReloadResult
		if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
			t.Fatalf("decode: %v", err)
		}
		return resp.StatusCode, res
	}
	r.set(admin + pipe("one", "live/one", "k2", "a"))
	if code, res := post(); code != http.StatusOK || len(res.Changed) != 1 {
		t.Errorf("POST /api/reload: %d %+v", code, res)
	}
	r.set(admin + "[[pipeline]]\nname = 3\n")
	code, res := post()
	if code != http.StatusUnprocessableEntity || len(res.Problems) == 0 {
		t.Errorf("POST /api/reload of a broken file: %d %+v, want 422 and the problems", code, res)
	}
	if n := len(r.rt.Running()); n != 1 {
		t.Errorf("%d pipelines running after a refused reload", n)
	}
}
