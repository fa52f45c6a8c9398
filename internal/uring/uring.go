// Package uring sends many sockets' gathered writes with one io_uring_enter:
// a fan-out that would make one writev per socket makes one system call per
// batch instead. It is Linux only; elsewhere, and where the kernel refuses
// io_uring (too old, seccomp, the io_uring_disabled sysctl), New fails with
// an error wrapping ErrUnavailable and callers keep their writev path.
package uring

import "errors"

// ErrUnavailable is wrapped by New's error when this system offers no
// io_uring to this process.
var ErrUnavailable = errors.New("io_uring unavailable")

// DefaultEntries is the ring size New uses for entries <= 0; a batch larger
// than the ring is sent in several system calls.
const DefaultEntries = 1024

// MaxIov is the most buffers one send takes (Linux's IOV_MAX).
const MaxIov = 1024
