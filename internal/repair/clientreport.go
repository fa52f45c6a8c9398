package repair

import (
	"errors"
	"fmt"

	"github.com/quic-go/quic-go"

	"github.com/mediapipe/mediapipe/core/media/repairwire"
)

// ErrNoReports: the server does not take REPORTs (it predates them and
// reset the report stream); nothing more is sent on this connection.
var ErrNoReports = errors.New("repair: server takes no reports")

// reportStream is a session's one stream for REPORTs; nothing comes back
// on it unless the server resets it.
type reportStream struct {
	st  *quic.Stream
	buf []byte
}

// Report sends one stream's receiver report (with VetSSRCs, only for an
// SSRC the server said it knows; else ErrUnknownSSRC). It never waits for the
// network: a full send window drops the report (ErrBusy), as the next one
// a second later supersedes it.
func (c *Client) Report(r repairwire.Report) error {
	s := c.session()
	if s == nil {
		return ErrNotConnected
	}
	if c.cfg.VetSSRCs {
		// Only streams the server said it sends: a stranger's stream at
		// the edge is nothing the cloud could use.
		c.vmu.Lock()
		v := c.vetted[r.RR.SSRC]
		known := v != nil && v.known
		c.vmu.Unlock()
		if !known {
			return ErrUnknownSSRC
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.noReports {
		return ErrNoReports
	}
	if s.report == nil {
		st, err := s.conn.OpenStream()
		if err != nil {
			return fmt.Errorf("repair: open report stream: %w", err)
		}
		s.report = &reportStream{st: st}
		c.wg.Add(1)
		go s.watchReports(s.report)
	}
	rs := s.report
	var err error
	if rs.buf, err = repairwire.AppendReport(rs.buf[:0], r); err != nil {
		return err
	}
	switch err := rs.st.TryWriteAll(rs.buf); {
	case err == nil:
		return nil
	case errors.Is(err, quic.ErrWouldBlock):
		return ErrBusy
	default:
		return fmt.Errorf("repair: report: %w", err)
	}
}

// watchReports reads the report stream, on which the server sends nothing.
// A reset for a bad frame is an older server that does not know REPORT:
// the session sends no more reports. Any other end of the stream (the
// server's idle timeout after a quiet minute, a malformed report) drops
// it, and the next report opens a new one. It ends with the connection.
func (s *session) watchReports(rs *reportStream) {
	defer s.c.wg.Done()
	var b [64]byte
	for {
		if _, err := rs.st.Read(b[:]); err != nil {
			var se *quic.StreamError
			old := errors.As(err, &se) && se.ErrorCode == repairwire.StreamBadFrame
			s.mu.Lock()
			if old {
				s.noReports = true
			}
			if s.report == rs {
				s.report = nil
			}
			s.mu.Unlock()
			if old {
				s.c.cfg.Log.Info("repair server takes no reports", "addr", s.c.cfg.Addr)
			}
			rs.st.CancelWrite(repairwire.CodeStreamGone)
			return
		}
	}
}
