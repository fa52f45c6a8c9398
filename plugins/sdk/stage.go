package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/plugins/internal/pluginpb"
	"github.com/mediapipe/mediapipe/plugins/internal/shared"
)

// inQueue is how many packets may wait for the stage inside the plugin;
// beyond it gRPC flow control holds the host back.
const inQueue = 1024

// outQueue bounds data packets waiting to go back to the host; a stage that
// emits faster than the host takes loses data packets (never events).
const outQueue = 8192

type stageServer struct {
	pluginpb.UnimplementedStageServer
	def core.Definition

	mu       sync.Mutex
	stage    core.Stage
	env      *core.Env
	maxBatch int
	running  bool
}

func newStageServer(def core.Definition) *stageServer { return &stageServer{def: def} }

func (s *stageServer) Describe(context.Context, *pluginpb.DescribeRequest) (*pluginpb.Description, error) {
	return &pluginpb.Description{Protocol: ProtocolVersion, Spec: shared.SpecToPB(s.def.Spec)}, nil
}

func (s *stageServer) Open(ctx context.Context, req *pluginpb.OpenRequest) (*pluginpb.OpenResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stage != nil {
		return nil, status.Error(codes.FailedPrecondition, "stage already open")
	}
	raw := make(map[string]any, len(req.Params))
	for k, v := range req.Params {
		raw[k] = shared.ValueFromPB(v)
	}
	name := req.Name
	if name == "" {
		name = s.def.Spec.Name
	}
	env := &core.Env{
		Pipeline: req.Pipeline, Index: int(req.Index), Name: name, Dir: req.Dir,
		Log:     logger.With("pipeline", req.Pipeline, "stage", req.Index),
		Metrics: core.NewMetrics().Stage(req.Pipeline, int(req.Index), name),
		Clock:   core.RealClock{},
	}
	env.Metrics.SetLogger(env.Log)
	stage, err := s.def.Build(raw, env)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if o, ok := stage.(core.Opener); ok {
		if err := o.Open(base); err != nil {
			return nil, status.Error(codes.FailedPrecondition, err.Error())
		}
	}
	s.stage, s.env, s.maxBatch = stage, env, shared.Clamp(req.MaxBatch)
	env.Log.Info("stage open", "name", s.def.Spec.Name, "pid", os.Getpid())
	return &pluginpb.OpenResponse{}, nil
}

func (s *stageServer) Run(rs pluginpb.Stage_RunServer) error {
	s.mu.Lock()
	stage, maxBatch, running := s.stage, s.maxBatch, s.running
	s.running = true
	s.mu.Unlock()
	if stage == nil {
		return status.Error(codes.FailedPrecondition, "Run before Open")
	}
	if running {
		return status.Error(codes.FailedPrecondition, "stage is already running")
	}
	ctx, cancel := context.WithCancel(base)
	defer cancel()
	streams := shared.NewTable()
	out := newBatchOutput(rs, streams, maxBatch)
	in := make(chan *core.Packet, inQueue)
	ran := make(chan error, 1)
	go func() { ran <- stage.Run(ctx, in, out) }()

	recvErr := s.feed(rs, streams, in, ran)
	close(in)
	var runErr error
	select {
	case runErr = <-ran:
	case <-rs.Context().Done():
		// The host is gone: stop the stage's helpers and wait for it.
		cancel()
		runErr = <-ran
	}
	if err := out.close(); err != nil && runErr == nil && recvErr == nil {
		runErr = err
	}
	switch {
	case runErr != nil:
		return status.Error(codes.Aborted, runErr.Error())
	case recvErr != nil:
		return recvErr
	}
	return nil
}

// feed decodes batches from the host into in until the host closes its side.
func (s *stageServer) feed(rs pluginpb.Stage_RunServer, streams *shared.Table, in chan<- *core.Packet, ran <-chan error) error {
	for {
		b, err := rs.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		for _, q := range b.Packets {
			p := decode(q, streams)
			if p == nil {
				continue
			}
			select {
			case in <- p:
			case err := <-ran:
				p.Release()
				if err == nil {
					err = errors.New("stage returned before its input ended")
				}
				return status.Error(codes.Aborted, err.Error())
			}
		}
	}
}

func decode(q *pluginpb.Packet, streams *shared.Table) *core.Packet {
	e := streams.ByID(q.Stream)
	switch q.Event {
	case pluginpb.Event_START:
		if e == nil || q.Name != e.S.Name {
			e = streams.Add(q.Stream, &core.Stream{Name: q.Name, ID: q.Stream, Started: time.Now()})
		}
	case pluginpb.Event_END:
		if e == nil {
			return nil
		}
		streams.End(e)
	default:
		if e == nil {
			// Data of a stream never started: the stage could not place it.
			return nil
		}
	}
	if q.Init != nil {
		t := shared.InitFromPB(q.Init)
		e.S.SetInit(t)
		e.InitSent.Store(t)
	}
	if q.Event != pluginpb.Event_DATA {
		return core.NewEvent(core.Event(q.Event), e.S)
	}
	return shared.PacketFromPB(q, e.S)
}

// batchOutput is the stage's Output: it queues what the stage emits and a
// flusher sends it to the host, as many packets per message as are waiting.
type batchOutput struct {
	rs       pluginpb.Stage_RunServer
	streams  *shared.Table
	maxBatch int

	mu      sync.Mutex
	pending []*core.Packet
	data    int
	closing bool
	wake    chan struct{}
	done    chan error

	// streams the stage made itself (not from the host), by wire id
	local   map[*core.Stream]uint64
	nextID  uint64
	sent    map[*core.Stream]*core.InitTags
	dropped int
}

func newBatchOutput(rs pluginpb.Stage_RunServer, streams *shared.Table, maxBatch int) *batchOutput {
	o := &batchOutput{
		rs: rs, streams: streams, maxBatch: maxBatch,
		wake: make(chan struct{}, 1), done: make(chan error, 1),
		local: map[*core.Stream]uint64{}, sent: map[*core.Stream]*core.InitTags{},
	}
	go func() { o.done <- o.flush() }()
	return o
}

// Emit implements core.Output.
func (o *batchOutput) Emit(p *core.Packet) {
	o.mu.Lock()
	if o.closing || (p.Event == core.EventData && o.data >= outQueue) {
		o.dropped++
		o.mu.Unlock()
		p.Release()
		return
	}
	if p.Event == core.EventData {
		o.data++
	}
	o.pending = append(o.pending, p)
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

func (o *batchOutput) close() error {
	o.mu.Lock()
	o.closing = true
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
	err := <-o.done
	if o.dropped > 0 {
		logger.Warn("dropped packets the host could not take in time", "count", o.dropped)
	}
	return err
}

func (o *batchOutput) flush() error {
	var (
		batch   []*core.Packet
		msg     pluginpb.Batch
		structs []pluginpb.Packet
		failed  error
	)
	for {
		<-o.wake
		for {
			o.mu.Lock()
			batch, o.pending = o.pending, batch[:0]
			o.data = 0
			closing := o.closing
			o.mu.Unlock()
			if len(batch) == 0 {
				if closing {
					return failed
				}
				break
			}
			for start := 0; start < len(batch); start += o.maxBatch {
				chunk := batch[start:min(start+o.maxBatch, len(batch))]
				if failed == nil {
					if cap(structs) < len(chunk) {
						structs = make([]pluginpb.Packet, len(chunk))
					}
					msg.Packets = msg.Packets[:0]
					for i, p := range chunk {
						q := &structs[i]
						o.encode(p, q)
						msg.Packets = append(msg.Packets, q)
					}
					if err := o.rs.Send(&msg); err != nil {
						failed = fmt.Errorf("sending to mediapipe: %w", err)
					}
				}
				for _, p := range chunk {
					p.Release()
				}
			}
			clear(batch)
		}
	}
}

func (o *batchOutput) encode(p *core.Packet, q *pluginpb.Packet) {
	*q = pluginpb.Packet{Event: pluginpb.Event(p.Event), Data: p.Data, Type: uint32(p.Type), Timestamp: p.Timestamp, Ingest: p.Ingest}
	s := p.Stream
	if s == nil {
		return
	}
	if e := o.streams.ByPtr(s); e != nil {
		q.Stream = e.ID
		if cur := s.Init(); cur != e.InitSent.Load() {
			q.Init = shared.InitToPB(cur)
			e.InitSent.Store(cur)
		}
	} else {
		// A stream the stage made: ids from the top half, apart from the host's.
		id, ok := o.local[s]
		if !ok {
			o.nextID++
			id = 1<<63 | o.nextID
			o.local[s] = id
		}
		q.Stream = id
		if cur := s.Init(); cur != o.sent[s] {
			q.Init = shared.InitToPB(cur)
			o.sent[s] = cur
		}
		if p.Event == core.EventEnd {
			delete(o.local, s)
			delete(o.sent, s)
		}
	}
	if p.Event == core.EventStart {
		q.Name = s.Name
	}
}
