// Package freeport picks free loopback ports for pipelines that tests and
// the bench build from text, where "127.0.0.1:0" cannot be written down.
package freeport

import "net"

// TCP returns "127.0.0.1:port" for a TCP port that was free a moment ago.
// The port is bound and let go; whoever binds it next (a pipeline a moment
// later) may in rare cases lose a race with another process — fine on
// loopback in tests and the bench.
func TCP() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// UDP is TCP for a UDP port.
func UDP() (string, error) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.LocalAddr().String(), nil
}
