package rtmpsource

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
)

// guardedConn is the byte stream go-rtmp reads: until its publish is
// accepted it must get there by the one absolute deadline set at accept
// (idle_timeout), so a client trickling a byte a second cannot hold it open;
// after that the idle timeout applies to every read. It checks message sizes
// before go-rtmp sees them.
type guardedConn struct {
	net.Conn
	s         *Stage
	idle      time.Duration
	published atomic.Bool // a publish was accepted: per-read idle deadline from now on
	guard     *chunkGuard

	raw *rawReader // nil where the connection has no file descriptor (tests' pipes)

	readBytes int64 // read so far; Read's and go-rtmp's handlers' own (one goroutine)

	cause  atomic.Pointer[string] // first reason the connection failed, for counting
	failed atomic.Bool            // go-rtmp ended the connection with an error
	once   sync.Once
	done   atomic.Bool // unpublished and closed by the client (or timed out): an orderly end
}

// unpublishWait bounds how long a connection that unpublished is left for
// the client to close.
const unpublishWait = 5 * time.Second

// awaitClose runs on go-rtmp's reading goroutine once the publisher has
// unpublished: it reads and discards what the client still sends
// (deleteStream) until the client closes or d passes, and from then on Read
// says EOF, so go-rtmp ends the connection as a normal end.
func (c *guardedConn) awaitClose(d time.Duration) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(d))
	var buf [512]byte
	for {
		if _, err := c.Conn.Read(buf[:]); err != nil {
			break
		}
	}
	c.done.Store(true)
}

func (c *guardedConn) setCause(reason string) { c.cause.CompareAndSwap(nil, &reason) }

func (c *guardedConn) Read(p []byte) (int, error) {
	if c.done.Load() {
		return 0, io.EOF
	}
	if c.idle > 0 && c.published.Load() {
		_ = c.Conn.SetReadDeadline(time.Now().Add(c.idle))
	}
	var n int
	var err error
	if c.raw != nil {
		n, err = c.raw.read(p)
	} else {
		n, err = c.Conn.Read(p)
	}
	if n > 0 {
		c.readBytes += int64(n)
		if gerr := c.guard.feed(p[:n]); gerr != nil {
			if errors.Is(gerr, errTooLarge) {
				c.setCause("message_too_large")
			} else {
				c.setCause("malformed")
			}
			_ = c.Conn.Close()
			return 0, gerr
		}
	}
	if err != nil && isTimeout(err) {
		c.setCause("idle_timeout")
	}
	return n, err
}

// isTimeout is apart from Read because errors.As moves its target to the
// heap: inline, that cost Read (once per chunk read) an allocation even
// when there was no error.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// kick closes the connection for the control API; go-rtmp then ends it as
// any other, and it is not counted as a failure.
func (c *guardedConn) kick() {
	c.setCause("kicked")
	_ = c.Conn.Close()
}

// Close is go-rtmp's last act on a connection (after the handler's OnClose):
// count why it ended and let Run stop waiting for it.
func (c *guardedConn) Close() error {
	var err error
	c.once.Do(func() {
		err = c.Conn.Close()
		c.s.forget(c)
	})
	return err
}

// errorHook notes that go-rtmp gave up on a connection with an error
// (it logs "Server closed by error" just before closing).
type errorHook struct{ c *guardedConn }

func (h errorHook) Levels() []logrus.Level { return []logrus.Level{logrus.ErrorLevel} }

func (h errorHook) Fire(*logrus.Entry) error {
	h.c.failed.Store(true)
	return nil
}

// trackingListener counts each accepted connection before go-rtmp's
// goroutine for it starts, so Run can wait for all of them.
type trackingListener struct {
	net.Listener
	s *Stage
}

func (l trackingListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		// go-rtmp retries at once on any error but its own close: pause so
		// that running out of file descriptors does not spin a core.
		if !errors.Is(err, net.ErrClosed) {
			time.Sleep(20 * time.Millisecond)
		}
		return nil, err
	}
	return l.s.track(nc), nil
}
