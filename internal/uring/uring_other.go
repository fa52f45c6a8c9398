//go:build !linux

package uring

// Ring is io_uring's batch sender; outside Linux New always fails.
type Ring struct{}

// New fails: io_uring is Linux's.
func New(entries int) (*Ring, error) { return nil, ErrUnavailable }

// Close does nothing.
func (r *Ring) Close() error { return nil }

// Add is never reached: there is no Ring.
func (r *Ring) Add(fd int, bufs [][]byte) int { return 0 }

// Len is 0.
func (r *Ring) Len() int { return 0 }

// Result is never reached: there is no Ring.
func (r *Ring) Result(i int) (int, error) { return 0, ErrUnavailable }

// Submit fails: there is no Ring.
func (r *Ring) Submit() error { return ErrUnavailable }
