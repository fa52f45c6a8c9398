package udpbatch

import "golang.org/x/sys/unix"

// mmsghdr is struct mmsghdr; Go's alignment pads it as C does.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// headers is the mmsghdr array of one sendmmsg or recvmmsg and what its
// entries point into, kept from call to call so a batch does not allocate.
type headers struct {
	hs    []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // a message's address; room for IPv4 too
}

// build sizes the arrays for ms (growing them only when a batch is larger
// than any before), points message i's iovecs at ms[i].Buffers and returns
// the bytes they hold. Names and control data are the caller's to set.
func (h *headers) build(ms []Message) (bytes int) {
	if cap(h.hs) < len(ms) {
		h.hs = make([]mmsghdr, len(ms))
		h.names = make([]unix.RawSockaddrInet6, len(ms))
	}
	h.hs, h.names = h.hs[:len(ms)], h.names[:len(ms)]
	nb := 0
	for i := range ms {
		nb += len(ms[i].Buffers)
	}
	if cap(h.iovs) < nb {
		h.iovs = make([]unix.Iovec, nb)
	}
	h.iovs = h.iovs[:nb]
	k := 0
	for i := range ms {
		m := &h.hs[i]
		*m = mmsghdr{}
		first := k
		for _, b := range ms[i].Buffers {
			h.iovs[k] = unix.Iovec{}
			if len(b) > 0 {
				h.iovs[k].Base = &b[0]
				h.iovs[k].SetLen(len(b))
			}
			bytes += len(b)
			k++
		}
		if k > first {
			m.hdr.Iov = &h.iovs[first]
			m.hdr.SetIovlen(k - first)
		}
	}
	return bytes
}
