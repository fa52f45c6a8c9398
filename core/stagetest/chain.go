package stagetest

import (
	"context"
	"sync"
	"testing"

	"github.com/mediapipe/mediapipe/core"
)

// ChainStage is one built-in stage of a chain RunChain runs: its name and
// raw parameters (nil: the defaults).
type ChainStage struct {
	Name string
	Raw  map[string]any
}

// RunChain runs stages in memory as a pipeline would, each on its own
// goroutine with a queue of 64 before it: send feeds the first (its
// channel is closed after send returns), and RunChain returns once every
// stage has returned, with what the last emitted and each stage's env by
// name (the last of a name repeated). Stages log their drops to their env.
func RunChain(t testing.TB, stages []ChainStage, send func(in chan<- *core.Packet)) ([]Captured, map[string]*core.Env) {
	t.Helper()
	chans := make([]chan *core.Packet, len(stages))
	for i := range chans {
		chans[i] = make(chan *core.Packet, 64)
	}
	out := NewCollector()
	envs := map[string]*core.Env{}
	var wg sync.WaitGroup
	for i, sc := range stages {
		env := core.TestEnv(sc.Name)
		env.Metrics.SetLogger(env.Log)
		envs[sc.Name] = env
		st := Build(t, sc.Name, sc.Raw, env)
		var o core.Output = out
		if i+1 < len(chans) {
			o = chanOutput(chans[i+1])
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := st.Run(context.Background(), chans[i], o); err != nil {
				t.Errorf("%s: %v", stages[i].Name, err)
			}
			if i+1 < len(chans) {
				close(chans[i+1])
			}
		}(i)
	}
	send(chans[0])
	close(chans[0])
	wg.Wait()
	return out.Packets(), envs
}

// chanOutput hands a stage's output to the next stage's queue.
type chanOutput chan *core.Packet

func (c chanOutput) Emit(p *core.Packet) { c <- p }
