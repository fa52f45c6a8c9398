//go:build !linux

package udpsource

import "syscall"

// control: outside Linux the system defaults apply (no buffer size, no
// shared multicast port).
func (o sockOpts) control(string, string, syscall.RawConn) error { return nil }

// dropReader: outside Linux the kernel's drops are not read.
type dropReader struct{}

func newDropReader(syscall.RawConn) *dropReader { return &dropReader{} }

func (*dropReader) drops() (uint32, bool) { return 0, false }
