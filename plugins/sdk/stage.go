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

// ackEvery is how often a stage that emitted nothing for that long (a sink,
// or a filter dropping what it takes) tells the host how much it consumed.
const ackEvery = 50 * time.Millisecond

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

func rawParams(req *pluginpb.OpenRequest) map[string]any {
	raw := make(map[string]any, len(req.Params))
	for k, v := range req.Params {
		raw[k] = shared.ValueFromPB(v)
	}
	return raw
}

// Check runs the definition's parameter check (decoding and the config's
// Validate) without building anything.
func (s *stageServer) Check(_ context.Context, req *pluginpb.OpenRequest) (*pluginpb.CheckResponse, error) {
	resp := &pluginpb.CheckResponse{}
	if s.def.Check != nil {
		for _, err := range s.def.Check(rawParams(req)) {
			resp.Errors = append(resp.Errors, err.Error())
		}
	}
	return resp, nil
}

func (s *stageServer) Open(ctx context.Context, req *pluginpb.OpenRequest) (*pluginpb.OpenResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stage != nil {
		return nil, status.Error(codes.FailedPrecondition, "stage already open")
	}
	raw := rawParams(req)
	name := req.Name
	if name == "" {
		name = s.def.Spec.Name
	}
	env := &core.Env{
		Pipeline: req.Pipeline, Index: int(req.Index), Name: name, Dir: req.Dir,
		Log:     logger, // the host adds pipeline, stage and plugin
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
	env.Log.Info("stage open", "spec", s.def.Spec.Name, "pid", os.Getpid())
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
	in := newIntake()
	out := newBatchOutput(rs, streams, maxBatch, in)
	source := s.def.Spec.IsSource()
	var runErr error
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		if source {
			runErr = stage.Run(ctx, nil, out) // a source gets no input
		} else {
			runErr = stage.Run(ctx, in.ch, out)
		}
	}()

	recvErr := s.feed(rs, streams, in, out, ran, &runErr)
	close(in.ch)
	if source {
		// The host closing its side is a source's stop: cancel, and it ends
		// its streams and returns.
		cancel()
	}
	select {
	case <-ran:
	case <-rs.Context().Done():
		// The host is gone: stop the stage's helpers and wait for it.
		cancel()
		<-ran
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
func (s *stageServer) feed(rs pluginpb.Stage_RunServer, streams *shared.Table, in *intake, out *batchOutput, ran <-chan struct{}, runErr *error) error {
	var b shared.InBatch
	for {
		// While the way back is congested, take no more from the host: gRPC
		// flow control then slows the host down instead of packets being
		// dropped here.
		for out.backlog() > outQueue/2 {
			select {
			case <-out.room:
			case <-ran:
				return stageEnded(*runErr)
			}
		}
		if err := rs.RecvMsg(&b); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		for i := range b.Packets {
			if b.Packets[i].Event == core.EventData {
				in.received()
			}
			p := decode(&b.Packets[i], streams)
			if p == nil {
				continue
			}
			if !in.push(p, ran) {
				p.Release()
				for _, q := range b.Packets[i+1:] {
					q.P.Release()
				}
				return stageEnded(*runErr)
			}
		}
	}
}

func stageEnded(err error) error {
	if err == nil {
		err = errors.New("stage returned before its input ended")
	}
	return status.Error(codes.Aborted, err.Error())
}

func decode(q *shared.InPacket, streams *shared.Table) *core.Packet {
	e := streams.ByID(q.Stream)
	switch q.Event {
	case core.EventStart:
		if e == nil || q.Name != e.S.Name {
			e = streams.Add(q.Stream, &core.Stream{Name: q.Name, ID: q.Stream, Started: time.Now()})
		}
	case core.EventEnd:
		if e == nil {
			return nil
		}
		streams.End(e)
	default:
		if e == nil {
			// Data of a stream never started: the stage could not place it.
			q.P.Release()
			return nil
		}
	}
	if q.Init != nil {
		e.S.SetInit(q.Init)
		e.InitSent.Store(q.Init)
	}
	if q.Event != core.EventData {
		return core.NewEvent(q.Event, e.S)
	}
	q.P.Stream = e.S
	return q.P
}

// batchOutput is the stage's Output: it queues what the stage emits and a
// flusher sends it to the host, as many packets per message as are waiting.
//
// Each message also says how many host data packets the stage had taken when
// it emitted the message's last packet (Batch.consumed): a stage that passes
// a packet on has finished the ones before it. So when the plugin dies, the
// host counts exactly what had not come back as dropped. A stage that emits
// nothing for ackEvery is taken to have finished what it took.
type batchOutput struct {
	rs       pluginpb.Stage_RunServer
	streams  *shared.Table
	maxBatch int
	in       *intake

	mu      sync.Mutex
	pending []*core.Packet
	data    int
	ack     uint64 // in.taken() at the last Emit
	emitted bool   // since the flusher's last tick
	closing bool
	wake    chan struct{}
	room    chan struct{} // a batch went out
	done    chan error

	// streams the stage made itself (not from the host), by wire id
	local   map[*core.Stream]uint64
	nextID  uint64
	sent    map[*core.Stream]*core.InitTags
	dropped int
}

func newBatchOutput(rs pluginpb.Stage_RunServer, streams *shared.Table, maxBatch int, in *intake) *batchOutput {
	o := &batchOutput{
		rs: rs, streams: streams, maxBatch: maxBatch, in: in,
		wake: make(chan struct{}, 1), room: make(chan struct{}, 1), done: make(chan error, 1),
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
	o.ack = max(o.ack, o.in.taken())
	o.emitted = true
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// backlog is how many data packets wait to be sent.
func (o *batchOutput) backlog() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.data
}

// close sends what is left and ends the flusher. The stage has returned:
// whatever it took is finished.
func (o *batchOutput) close() error {
	o.mu.Lock()
	o.closing = true
	o.ack = max(o.ack, o.in.taken())
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
		batch  []*core.Packet
		msg    shared.OutBatch
		failed error
		sent   uint64 // the last consumed count sent
	)
	tick := time.NewTicker(ackEvery)
	defer tick.Stop()
	send := func() {
		if failed == nil {
			if err := o.rs.SendMsg(&msg); err != nil {
				failed = fmt.Errorf("sending to mediapipe: %w", err)
			}
		}
		sent = msg.Consumed
	}
	for {
		select {
		case <-o.wake:
		case <-tick.C:
			// Nothing emitted for a whole tick: what the stage took it has
			// finished (dropped, or a sink's).
			o.mu.Lock()
			idle := !o.emitted && len(o.pending) == 0
			o.emitted = false
			o.mu.Unlock()
			if t := o.in.taken(); idle && t > sent {
				msg.Packets, msg.Consumed = msg.Packets[:0], t
				send()
			}
			continue
		}
		for {
			o.mu.Lock()
			batch, o.pending = o.pending, batch[:0]
			o.data = 0
			closing := o.closing
			ack := max(o.ack, sent)
			o.mu.Unlock()
			if len(batch) == 0 {
				if closing {
					if ack > sent {
						msg.Packets, msg.Consumed = msg.Packets[:0], ack
						send()
					}
					return failed
				}
				break
			}
			for start := 0; start < len(batch); start += o.maxBatch {
				end := min(start+o.maxBatch, len(batch))
				chunk := batch[start:end]
				msg.Packets, msg.Consumed = msg.Packets[:0], sent
				if end == len(batch) {
					// Only the last chunk holds the output of the stage's
					// latest take.
					msg.Consumed = ack
				}
				if failed == nil {
					for _, p := range chunk {
						if p.Stream == nil {
							continue
						}
						msg.Packets = append(msg.Packets, o.encode(p))
					}
				}
				send()
				for _, p := range chunk {
					p.Release()
				}
			}
			clear(batch)
			select {
			case o.room <- struct{}{}:
			default:
			}
		}
	}
}

func (o *batchOutput) encode(p *core.Packet) shared.OutPacket {
	s := p.Stream
	q := shared.OutPacket{P: p}
	if e := o.streams.ByPtr(s); e != nil {
		q.Stream = e.ID
		if s.Name != e.Name {
			// Renamed in place: say so on every packet, so mediapipe reports
			// the mistake instead of passing it on under the old name.
			q.Name = s.Name
		}
		if cur := s.Init(); cur != e.InitSent.Load() {
			q.Init, q.HasInit = cur, true
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
			q.Init, q.HasInit = cur, true
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
	return q
}
