//go:build !linux

package httpflvsink

import (
	"errors"
	"syscall"
)

const maxIov = 1024

const haveWritev = false

type iovecs struct{}

var errNoWritev = errors.New("no non-blocking writev on this system")

// tryWritev is unavailable here: every viewer is written by its own goroutine.
func tryWritev(syscall.RawConn, *iovecs, [][]byte) (int, error) { return 0, errNoWritev }

// dupSocket is never reached here: there is no ring to send with.
func dupSocket(syscall.RawConn) (int, error) { return -1, errNoWritev }

func closeSock(int) {}
