// Package sockbuf sizes a UDP socket's kernel send and receive buffers and
// reads back what the kernel granted; outside Linux the system defaults stand.
package sockbuf
