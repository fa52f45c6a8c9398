package uring

import (
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The kernel ABI (include/uapi/linux/io_uring.h) this package uses.
const (
	opSendmsg = 9 // IORING_OP_SENDMSG

	setupClamp       = 1 << 4 // IORING_SETUP_CLAMP: a too large size is cut, not refused
	setupSubmitAll   = 1 << 7 // IORING_SETUP_SUBMIT_ALL: one bad entry does not stop the rest
	setupCoopTaskrun = 1 << 8 // IORING_SETUP_COOP_TASKRUN: no IPI to post a completion

	featSingleMmap = 1 << 0 // IORING_FEAT_SINGLE_MMAP
	featNodrop     = 1 << 1 // IORING_FEAT_NODROP

	enterGetevents = 1 << 0 // IORING_ENTER_GETEVENTS

	offSQRing = 0          // IORING_OFF_SQ_RING
	offCQRing = 0x8000000  // IORING_OFF_CQ_RING
	offSQEs   = 0x10000000 // IORING_OFF_SQES
)

type sqOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

// params is struct io_uring_params.
type params struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqOffsets
	cqOff                                                                  cqOffsets
}

// sqe is struct io_uring_sqe (64 bytes).
type sqe struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64
	addr        uint64
	len         uint32
	opFlags     uint32 // msg_flags for a send
	userData    uint64
	bufIndex    uint16
	personality uint16
	spliceFdIn  int32
	addr3       uint64
	pad         uint64
}

// cqe is struct io_uring_cqe (16 bytes).
type cqe struct {
	userData uint64
	res      int32
	flags    uint32
}

// sendFlags: a full socket completes at once with -EAGAIN (MSG_DONTWAIT
// also keeps io_uring from arming a poll and finishing the send later, so
// Submit never waits on a peer), and a peer that went away gives EPIPE, not
// SIGPIPE.
const sendFlags = unix.MSG_DONTWAIT | unix.MSG_NOSIGNAL

// op is one send of the batch being built: its socket and its iovecs.
type op struct {
	fd       int32
	first, n int32 // iovs[first : first+n]
}

// Ring is an io_uring set up for batches of non-blocking socket sends. It is
// not safe for concurrent use: one goroutine builds a batch with Add, sends
// it with Submit and reads Result.
type Ring struct {
	fd      int
	ringMem []byte // the SQ ring, and the CQ ring too with FEAT_SINGLE_MMAP
	cqMem   []byte // the CQ ring's own mapping, else nil
	sqeMem  []byte

	sqEntries uint32
	sqHead    *uint32 // the kernel's
	sqTail    *uint32
	sqMask    uint32
	cqHead    *uint32
	cqTail    *uint32 // the kernel's
	cqMask    uint32
	cqes      unsafe.Pointer
	sqes      unsafe.Pointer

	// The batch: kept here, referenced, until every send is reaped, so the
	// kernel never reads memory the collector has let go. iovs point into
	// the caller's buffers, which the caller keeps until Submit returns.
	ops    []op
	iovs   []unix.Iovec
	msgs   []unix.Msghdr
	res    []int32
	done   bool // Submit ran: the next Add starts a new batch
	broken error
}

// New sets up a ring of entries submission slots (DefaultEntries for
// entries <= 0). Where io_uring is missing or refused, the error wraps
// ErrUnavailable.
func New(entries int) (*Ring, error) {
	if entries <= 0 {
		entries = DefaultEntries
	}
	var p params
	fd, err := setup(uint32(entries), &p, setupClamp|setupSubmitAll|setupCoopTaskrun)
	if err == unix.EINVAL { // a kernel before 5.19 lacks the newer flags
		p = params{}
		fd, err = setup(uint32(entries), &p, setupClamp)
	}
	if err != nil {
		return nil, fmt.Errorf("uring: io_uring_setup: %w: %w", ErrUnavailable, err)
	}
	r := &Ring{fd: fd}
	if err := r.mapRings(&p); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func setup(entries uint32, p *params, flags uint32) (int, error) {
	p.flags = flags
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(p)), 0)
	if errno != 0 {
		return -1, errno
	}
	return int(fd), nil
}

func (r *Ring) mapRings(p *params) error {
	if p.features&featNodrop == 0 {
		// Completions could then be lost on overflow; kernels since 5.5
		// have it, and a batch never exceeds the CQ ring anyway.
		return fmt.Errorf("uring: kernel lacks IORING_FEAT_NODROP: %w", ErrUnavailable)
	}
	sqSize := int(p.sqOff.array) + int(p.sqEntries)*4
	cqSize := int(p.cqOff.cqes) + int(p.cqEntries)*int(unsafe.Sizeof(cqe{}))
	single := p.features&featSingleMmap != 0
	if single {
		sqSize = max(sqSize, cqSize)
	}
	var err error
	if r.ringMem, err = mmap(r.fd, offSQRing, sqSize); err != nil {
		return fmt.Errorf("uring: map the submission ring: %w", err)
	}
	cqMem := r.ringMem
	if !single {
		if r.cqMem, err = mmap(r.fd, offCQRing, cqSize); err != nil {
			return fmt.Errorf("uring: map the completion ring: %w", err)
		}
		cqMem = r.cqMem
	}
	if r.sqeMem, err = mmap(r.fd, offSQEs, int(p.sqEntries)*int(unsafe.Sizeof(sqe{}))); err != nil {
		return fmt.Errorf("uring: map the submission entries: %w", err)
	}
	u32 := func(mem []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&mem[off])) }
	r.sqEntries = p.sqEntries
	r.sqHead, r.sqTail = u32(r.ringMem, p.sqOff.head), u32(r.ringMem, p.sqOff.tail)
	r.sqMask = *u32(r.ringMem, p.sqOff.ringMask)
	r.cqHead, r.cqTail = u32(cqMem, p.cqOff.head), u32(cqMem, p.cqOff.tail)
	r.cqMask = *u32(cqMem, p.cqOff.ringMask)
	r.cqes = unsafe.Pointer(&cqMem[p.cqOff.cqes])
	r.sqes = unsafe.Pointer(&r.sqeMem[0])
	// Slot i always names entry i: the indirection is set once.
	arr := unsafe.Slice(u32(r.ringMem, p.sqOff.array), p.sqEntries)
	for i := range arr {
		arr[i] = uint32(i)
	}
	return nil
}

func mmap(fd int, off int64, size int) ([]byte, error) {
	return unix.Mmap(fd, off, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
}

// Close unmaps the rings and closes the ring's descriptor.
func (r *Ring) Close() error {
	var first error
	for _, m := range []*[]byte{&r.sqeMem, &r.cqMem, &r.ringMem} {
		if *m != nil {
			if err := unix.Munmap(*m); err != nil && first == nil {
				first = fmt.Errorf("uring: unmap: %w", err)
			}
			*m = nil
		}
	}
	if r.fd >= 0 {
		if err := unix.Close(r.fd); err != nil && first == nil {
			first = fmt.Errorf("uring: close: %w", err)
		}
		r.fd = -1
	}
	r.broken = os.ErrClosed
	return first
}

// Add queues one send of bufs (at most MaxIov of them; empty ones are
// skipped) to socket fd and returns its index for Result. The buffers must
// stay unchanged until Submit returns. After a Submit, Add starts a new batch.
func (r *Ring) Add(fd int, bufs [][]byte) int {
	if r.done {
		r.ops, r.iovs, r.res, r.done = r.ops[:0], r.iovs[:0], r.res[:0], false
	}
	o := op{fd: int32(fd), first: int32(len(r.iovs))}
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		if o.n == MaxIov {
			break // the rest is a short write's, sent next time
		}
		e := unix.Iovec{Base: &b[0]}
		e.SetLen(len(b))
		r.iovs = append(r.iovs, e)
		o.n++
	}
	r.ops = append(r.ops, o)
	r.res = append(r.res, 0)
	return len(r.ops) - 1
}

// Len is the number of sends in the batch.
func (r *Ring) Len() int { return len(r.ops) }

// Result is send i's outcome: the bytes the socket took (0 when it was
// full), or the error that failed it.
func (r *Ring) Result(i int) (int, error) {
	res := r.res[i]
	switch {
	case res >= 0:
		return int(res), nil
	case res == -int32(unix.EAGAIN):
		return 0, nil
	}
	return 0, fmt.Errorf("uring: send: %w", syscall.Errno(-res))
}

// Submit sends the batch, the ring's size at a time, one io_uring_enter each,
// and returns when every send has completed. An error means the ring is no
// longer usable (every later Submit fails too); the sends it did not reap
// have failed with ECANCELED.
func (r *Ring) Submit() error {
	r.done = true
	if r.broken != nil {
		for i := range r.res {
			r.res[i] = -int32(unix.ECANCELED)
		}
		return r.broken
	}
	if len(r.msgs) < len(r.ops) {
		r.msgs = make([]unix.Msghdr, len(r.ops))
	}
	for i, o := range r.ops {
		m := &r.msgs[i]
		m.Iov, m.Iovlen = nil, 0
		if o.n > 0 {
			m.Iov = &r.iovs[o.first]
			m.SetIovlen(int(o.n))
		}
	}
	var err error
	for from := 0; from < len(r.ops) && err == nil; from += int(r.sqEntries) {
		err = r.submit(from, min(len(r.ops), from+int(r.sqEntries)))
	}
	clear(r.iovs) // hold on to no caller's buffer
	for i := range r.ops {
		r.msgs[i].Iov = nil
	}
	if err != nil {
		for i := range r.res {
			if r.res[i] == pending {
				r.res[i] = -int32(unix.ECANCELED)
			}
		}
	}
	return err
}

// pending marks a send not yet reaped: no kernel result is this value.
const pending = -1 << 31

// maxRetries bounds io_uring_enter calls that fail with a transient error
// in one batch before the ring is given up.
const maxRetries = 100

// submit sends ops[from:to] (at most the ring's size) and reaps them all.
func (r *Ring) submit(from, to int) error {
	tail := *r.sqTail // only this goroutine moves the tail
	for i := from; i < to; i++ {
		s := (*sqe)(unsafe.Add(r.sqes, uintptr(tail&r.sqMask)*unsafe.Sizeof(sqe{})))
		*s = sqe{
			opcode:   opSendmsg,
			fd:       r.ops[i].fd,
			addr:     uint64(uintptr(unsafe.Pointer(&r.msgs[i]))),
			len:      1,
			opFlags:  sendFlags,
			userData: uint64(i),
		}
		r.res[i] = pending
		tail++
	}
	atomic.StoreUint32(r.sqTail, tail) // the entries before the tail
	want, retries := to-from, 0
	for want > 0 {
		toSubmit := tail - atomic.LoadUint32(r.sqHead)
		// Raw: every send is MSG_DONTWAIT and completes while it is
		// submitted, so the call does not wait, and a normal syscall
		// would have the runtime's sysmon see a P "in a syscall" for the
		// whole batch, hand it to another thread and poll every 20 µs.
		_, _, errno := unix.RawSyscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit), uintptr(want), enterGetevents, 0, 0)
		want -= r.reap()
		switch errno {
		case 0:
		case unix.EINTR, unix.EAGAIN, unix.EBUSY:
			// A signal (the runtime's preemption), or short of memory
			// for a moment: ask again for what is left.
			if retries++; retries > maxRetries {
				r.broken = fmt.Errorf("uring: io_uring_enter: %w", errno)
				return r.broken
			}
		default:
			r.broken = fmt.Errorf("uring: io_uring_enter: %w", errno)
			return r.broken
		}
	}
	return nil
}

// reap records every completion the ring holds and returns how many.
func (r *Ring) reap() int {
	head, tail := *r.cqHead, atomic.LoadUint32(r.cqTail)
	n := int(tail - head)
	for ; head != tail; head++ {
		c := (*cqe)(unsafe.Add(r.cqes, uintptr(head&r.cqMask)*unsafe.Sizeof(cqe{})))
		if i := c.userData; i < uint64(len(r.res)) {
			r.res[i] = c.res
		}
	}
	atomic.StoreUint32(r.cqHead, head)
	return n
}
