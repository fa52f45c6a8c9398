//go:build !linux

package rtmpsource

import (
	"errors"
	"net"
)

// rawReader is Linux's; elsewhere the connection is read as it is.
type rawReader struct{}

func newRawReader(net.Conn) *rawReader { return nil }

// read is never called: newRawReader gives no reader to call it on.
func (*rawReader) read([]byte) (int, error) {
	return 0, errors.New("rtmpsource: no raw reads on this system")
}
