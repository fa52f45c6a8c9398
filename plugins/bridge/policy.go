package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"reflect"
	"slices"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mediapipe/mediapipe/core/control"
	"github.com/mediapipe/mediapipe/plugins/internal/pluginpb"
	"github.com/mediapipe/mediapipe/plugins/internal/shared"
)

// DecideTimeout bounds a Decide whose context has no deadline: a hung plugin
// must not hold the controller.
var DecideTimeout = 2 * time.Second

// maxDecisionJSON bounds the decision a plugin may answer; a real one is a
// few hundred bytes per stream and edge.
const maxDecisionJSON = 1 << 20

// maxReason bounds Decision.Reason, which the controller logs.
const maxReason = 256

// Policy is a control.Policy served by a plugin process (policy = "plugin").
// Each Decide sends the Input as JSON and checks the Decision it gets back:
// strict JSON (unknown fields are an error, so a misspelt field is not
// silently zero), overheads and shares within 0 … 1, only SSRCs and edges
// the Input named. A call that finds the process dead starts it again with
// back-off, in the background (see respawner); calls in between fail at
// once, and the controller keeps its current decision. After maxTimeouts
// calls in a row without an answer within their deadline, the process is
// taken for hung and killed, to be started again the same way.
type Policy struct {
	respawner
	name            string
	warnedNonFinite atomic.Bool // the input had NaN or Inf: logged once
}

var _ control.Policy = (*Policy)(nil)

// OpenPolicy starts the policy plugin at path (control.PluginOpener). It
// fails when path is not a plugin, or is a plugin of another kind.
func OpenPolicy(path string) (control.Policy, error) {
	log := slog.Default()
	p, err := start(path, shared.KindPolicy, log)
	if err != nil {
		return nil, err
	}
	return &Policy{respawner: newRespawner(p, shared.KindPolicy, "policy plugin", log), name: p.spec.Name}, nil
}

// Name is the policy's name as the plugin describes it.
func (p *Policy) Name() string { return p.name }

// SetLogger makes the policy log (its restarts) to log. The controller may
// call it through an interface, to log under its stage.
func (p *Policy) SetLogger(log *slog.Logger) {
	if log == nil {
		return
	}
	p.mu.Lock()
	p.log = log
	p.mu.Unlock()
}

// Decide implements control.Policy. It returns within ctx's deadline, or
// DecideTimeout when ctx has none.
func (p *Policy) Decide(ctx context.Context, in *control.Input) (control.Decision, error) {
	if in == nil {
		return control.Decision{}, fmt.Errorf("policy plugin %s: no input", p.path)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DecideTimeout)
		defer cancel()
	}
	body, err := json.Marshal(in)
	if err != nil {
		// NaN or Inf somewhere in the input (json.Marshal refuses them):
		// the plugin gets 0 there rather than no input at all.
		body, err = json.Marshal(finiteCopy(reflect.ValueOf(in)).Interface())
		if err != nil {
			return control.Decision{}, fmt.Errorf("policy plugin %s: encoding the input: %w", p.path, err)
		}
		if !p.warnedNonFinite.Swap(true) {
			p.logger().Warn("policy plugin input had NaN or Inf figures: sent as 0", "path", p.path)
		}
	}
	proc, err := p.current(ctx)
	if err != nil {
		return control.Decision{}, err
	}
	dl, _ := ctx.Deadline()
	budget := time.Until(dl)
	// gRPC would accept up to its own limit (256 MiB here) before
	// decodeDecision could refuse it.
	resp, err := proc.policy.Decide(ctx, &pluginpb.PolicyRequest{InputJson: body},
		grpc.MaxCallRecvMsgSize(maxDecisionJSON+4096))
	p.called(proc, err != nil && timedOut(ctx, err))
	if err != nil {
		return control.Decision{}, p.callError(ctx, proc, err, budget)
	}
	d, err := decodeDecision(resp.GetDecisionJson())
	if err == nil {
		err = checkDecision(in, &d)
	}
	if err != nil {
		return control.Decision{}, fmt.Errorf("policy plugin %s: bad decision: %w", p.path, err)
	}
	return d, nil
}

func (p *Policy) logger() *slog.Logger {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log
}

// callError says in one line why a Decide call of proc failed.
func (p *Policy) callError(ctx context.Context, proc *process, err error, budget time.Duration) error {
	switch {
	case timedOut(ctx, err):
		return fmt.Errorf("policy plugin %s: no decision within its deadline (%s): %w",
			p.path, budget.Round(time.Millisecond), context.DeadlineExceeded)
	case ctx.Err() != nil:
		return fmt.Errorf("policy plugin %s: %w", p.path, ctx.Err())
	case status.Code(err) == codes.ResourceExhausted:
		return fmt.Errorf("policy plugin %s: bad decision: over %d bytes, refused unread (%s)", p.path, maxDecisionJSON, statusMessage(err))
	case status.Code(err) == codes.Unavailable:
		if exitedSoon(ctx, proc) {
			p.gone(proc)
			return fmt.Errorf("policy plugin %s: the process is gone (%s)", p.path, statusMessage(err))
		}
		return fmt.Errorf("policy plugin %s: unavailable (%s)", p.path, statusMessage(err))
	}
	return fmt.Errorf("policy plugin %s: %s", p.path, statusMessage(err))
}

// finiteCopy copies v (an Input, through pointers, slices, maps and
// structs) with every NaN or infinite float made 0, leaving v unchanged.
func finiteCopy(v reflect.Value) reflect.Value {
	switch v.Kind() {
	case reflect.Float32, reflect.Float64:
		if f := v.Float(); math.IsNaN(f) || math.IsInf(f, 0) {
			return reflect.Zero(v.Type())
		}
	case reflect.Pointer:
		if !v.IsNil() {
			c := reflect.New(v.Type().Elem())
			c.Elem().Set(finiteCopy(v.Elem()))
			return c
		}
	case reflect.Slice:
		if !v.IsNil() {
			c := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
			for i := range v.Len() {
				c.Index(i).Set(finiteCopy(v.Index(i)))
			}
			return c
		}
	case reflect.Map:
		if !v.IsNil() {
			c := reflect.MakeMapWithSize(v.Type(), v.Len())
			for it := v.MapRange(); it.Next(); {
				c.SetMapIndex(it.Key(), finiteCopy(it.Value()))
			}
			return c
		}
	case reflect.Struct:
		c := reflect.New(v.Type()).Elem()
		c.Set(v) // unexported fields (time.Time's) as they are
		for i := range v.NumField() {
			if c.Field(i).CanSet() {
				c.Field(i).Set(finiteCopy(v.Field(i)))
			}
		}
		return c
	}
	return v
}

// Close implements control.Policy: it stops the process and waits for it.
func (p *Policy) Close() error {
	p.close()
	return nil
}

// decodeDecision parses a plugin's answer: one JSON object and nothing
// else, no field the contract does not have.
func decodeDecision(b []byte) (control.Decision, error) {
	var d control.Decision
	if len(b) > maxDecisionJSON {
		return d, fmt.Errorf("%d bytes of JSON (at most %d)", len(b), maxDecisionJSON)
	}
	if t := bytes.TrimSpace(b); len(t) == 0 || t[0] != '{' {
		return d, errors.New("not a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return control.Decision{}, fmt.Errorf("JSON: %w", err)
	}
	// Token, not More: More is false before a stray '}' or ']'.
	if _, err := dec.Token(); err != io.EOF {
		return control.Decision{}, errors.New("JSON: data after the decision")
	}
	return d, nil
}

// checkDecision refuses a decision the controller could not apply: an
// overhead or share outside 0 … 1, shares summing over 1, a negative or
// infinite pace, an SSRC or edge the input did not name. It truncates an
// overlong Reason (it is logged).
func checkDecision(in *control.Input, d *control.Decision) error {
	for ssrc, s := range d.Streams {
		if !slices.ContainsFunc(in.Streams, func(st control.Stream) bool { return st.SSRC == ssrc }) {
			return fmt.Errorf("stream %d: no such SSRC in the input", ssrc)
		}
		if !(s.Overhead >= 0 && s.Overhead <= 1) { // NaN fails both
			return fmt.Errorf("stream %d: overhead %v is outside 0 … 1", ssrc, s.Overhead)
		}
		if !(s.PaceBytesPerSecond >= 0) || math.IsInf(s.PaceBytesPerSecond, 0) {
			return fmt.Errorf("stream %d: pace_bytes_per_second %v is not a rate (≥ 0; 0: no pacing)", ssrc, s.PaceBytesPerSecond)
		}
	}
	sum := 0.0
	for edge, share := range d.RepairShares {
		if !slices.Contains(in.Edges, edge) {
			return fmt.Errorf("repair share for edge %d: no such edge in the input", edge)
		}
		if !(share >= 0 && share <= 1) {
			return fmt.Errorf("repair share for edge %d: %v is outside 0 … 1", edge, share)
		}
		sum += share
	}
	// A little slack: 1/3 + 1/3 + 1/3 need not be exactly 1 in floating point.
	if sum > 1+1e-9 {
		return fmt.Errorf("repair shares sum to %v, more than 1", sum)
	}
	if len(d.Reason) > maxReason {
		n := maxReason
		for n > 0 && !utf8.RuneStart(d.Reason[n]) {
			n-- // not inside a character
		}
		d.Reason = d.Reason[:n] + "…"
	}
	return nil
}
