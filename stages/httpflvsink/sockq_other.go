//go:build !linux

package httpflvsink

import "syscall"

// sockProbe cannot read a socket's send queue here: viewers are shed only
// when their socket accepts nothing for write_timeout.
type sockProbe struct{ rc syscall.RawConn }

func (*sockProbe) outq() (int, bool) { return 0, false }
