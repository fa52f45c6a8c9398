//go:build !linux

package polltimer

import "time"

type impl struct{}

// init leaves the work to the fallback, silently: on this system that is
// the timer there is.
func (t *Timer) init(c chan struct{}) error {
	t.initFallback(c)
	return nil
}

func (t *Timer) reset(time.Duration) {}
func (t *Timer) close() error        { return nil }
