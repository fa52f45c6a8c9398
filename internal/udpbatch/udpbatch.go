// Package udpbatch sends and receives UDP datagrams in batches (sendmmsg,
// recvmmsg on Linux) without allocating per datagram.
package udpbatch

import (
	"golang.org/x/net/ipv4"
)

// Message is one datagram of a batch: Buffers in, N (bytes) and Flags out.
// It is golang.org/x/net's message type, shared by ipv4 and ipv6.
type Message = ipv4.Message
