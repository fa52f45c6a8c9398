package rtpreorder

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/repairwire"
	"github.com/mediapipe/mediapipe/internal/repair"
)

// clients are the repair connections to every address of retransmit: the
// primary cloud and its standbys. A stream's packets come from one cloud at
// a time (udp-source hands a name over to a new sender only once the old one
// is quiet), and each cloud knows only the SSRCs it sends, so an SSRC's
// NACKs go to the cloud that says it knows it: each client is asked (the
// repair client's SSRC vetting, one STREAMS/INIT round trip per cloud), and
// the first that knows it serves that SSRC until it is forgotten. With one
// address this is the one client, as before.
type clients struct {
	cs        []*repair.Client
	owner     map[uint32]*repair.Client // Run's goroutine only
	connected atomic.Int32
}

func (m *clients) Close() error {
	var errs []error
	for _, c := range m.cs {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

func (m *clients) SetToken(tok string) error {
	for _, c := range m.cs {
		if err := c.SetToken(tok); err != nil {
			return err
		}
	}
	return nil
}

// Connected reports whether some repair server is connected.
func (m *clients) Connected() bool {
	for _, c := range m.cs {
		if c.Connected() {
			return true
		}
	}
	return false
}

// LastError is the first client's last connection error, else the next's.
func (m *clients) LastError() error {
	for _, c := range m.cs {
		if err := c.LastError(); err != nil {
			return err
		}
	}
	return nil
}

// RTT is the longest of the connected clients' round trips: the retry
// interval must suit whichever cloud a gap is asked of.
func (m *clients) RTT() time.Duration {
	var rtt time.Duration
	for _, c := range m.cs {
		rtt = max(rtt, c.RTT())
	}
	return rtt
}

// Vet starts asking every cloud whether it knows ssrc.
func (m *clients) Vet(ssrc uint32) {
	for _, c := range m.cs {
		c.Vet(ssrc)
	}
}

// Forget forgets ssrc on every client, and which cloud served it.
func (m *clients) Forget(ssrc uint32) {
	delete(m.owner, ssrc)
	for _, c := range m.cs {
		c.Forget(ssrc)
	}
}

// Nack asks ssrc's cloud for seqs: the one known to serve it, else the
// first that says it knows it. ErrChecking while some cloud is still being
// asked; ErrUnknownSSRC when none knows it.
func (m *clients) Nack(ssrc uint32, seqs []uint16) error {
	if len(m.cs) == 1 {
		return m.cs[0].Nack(ssrc, seqs)
	}
	if c := m.owner[ssrc]; c != nil {
		return c.Nack(ssrc, seqs)
	}
	checking := false
	var other error
	for _, c := range m.cs {
		switch err := c.Nack(ssrc, seqs); {
		case err == nil:
			m.owner[ssrc] = c
			return nil
		case errors.Is(err, repair.ErrChecking):
			checking = true
		case errors.Is(err, repair.ErrUnknownSSRC):
		default:
			other = err
		}
	}
	switch {
	case checking:
		return repair.ErrChecking
	case other != nil:
		return other
	}
	return repair.ErrUnknownSSRC
}

// Init fetches a stream's init tags from the first cloud that has them,
// asking the connected clouds first: a cloud that is down (the primary
// during a failover) would hold the request until ctx ends, leaving none
// of its time for the standby that sends the stream now.
func (m *clients) Init(ctx context.Context, ssrc uint32, name string) (*core.InitTags, error) {
	order := make([]*repair.Client, 0, len(m.cs))
	for _, c := range m.cs {
		if c.Connected() {
			order = append(order, c)
		}
	}
	for _, c := range m.cs {
		if !c.Connected() {
			order = append(order, c)
		}
	}
	err := repair.ErrUnknownStream
	for _, c := range order {
		tags, cerr := c.Init(ctx, ssrc, name)
		if cerr == nil {
			return tags, nil
		}
		if !errors.Is(cerr, repair.ErrUnknownStream) {
			err = cerr // not "unknown" unless every cloud asked said so
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, err
}

// errNoOwner: several clouds, and none has said yet that it sends the SSRC.
var errNoOwner = errors.New("rtp-reorder: no cloud serves the ssrc yet")

// Report sends ssrc's report to the cloud that sends it: the one client,
// or the cloud that said it knows the SSRC.
func (m *clients) Report(ssrc uint32, r repairwire.Report) error {
	if len(m.cs) == 1 {
		return m.cs[0].Report(r)
	}
	if c := m.owner[ssrc]; c != nil {
		return c.Report(r)
	}
	return errNoOwner
}
