//go:build !linux

package udpsource

import "syscall"

// control: outside Linux the system defaults apply (no buffer size, no
// shared multicast port).
func (o sockOpts) control(string, string, syscall.RawConn) error { return nil }

// kernelDrops: outside Linux the kernel's drops are not read.
func kernelDrops(syscall.RawConn) (uint32, bool) { return 0, false }
