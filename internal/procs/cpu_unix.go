//go:build unix

package procs

import (
	"time"

	"golang.org/x/sys/unix"
)

// processCPU is the user and system time of every thread of the process
// (not of its children: plugin processes are theirs).
func processCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
