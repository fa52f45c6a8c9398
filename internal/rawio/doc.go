// Package rawio reads non-blocking descriptors with read(2) made raw: not
// through the runtime's syscall entry, which wakes the runtime's monitor
// thread (sysmon) whenever the process was idle — on a live relay, every
// burst, at a cost larger than the read's (docs/performance.md, "What
// limits the fan-out now"). A non-blocking read never blocks, so the raw
// call cannot hold its P; with nothing to read it waits in the runtime's
// poller, deadlines included, as net.Conn.Read does. Linux only.
package rawio
