//go:build !unix

package procs

import "time"

// processCPU is -1 where the process's CPU time is not read: New then
// leaves GOMAXPROCS alone.
func processCPU() time.Duration { return -1 }
