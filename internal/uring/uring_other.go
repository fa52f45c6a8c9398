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

// RegisterFiles fails: there is no Ring.
func (r *Ring) RegisterFiles(n int) error { return ErrUnavailable }

// Register fails: there is no Ring.
func (r *Ring) Register(fd int) (int, error) { return -1, ErrUnavailable }

// Unregister does nothing.
func (r *Ring) Unregister(slot int) error { return nil }

// FreeSlots is 0.
func (r *Ring) FreeSlots() int { return 0 }

// AddFixed is never reached: there is no Ring.
func (r *Ring) AddFixed(slot int, bufs [][]byte) int { return 0 }

// Len is 0.
func (r *Ring) Len() int { return 0 }

// Result is never reached: there is no Ring.
func (r *Ring) Result(i int) (int, error) { return 0, ErrUnavailable }

// Submit fails: there is no Ring.
func (r *Ring) Submit() error { return ErrUnavailable }
