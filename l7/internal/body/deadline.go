package body

import "time"

// A deadline is one direction (read or write) of a connection's deadline as
// the HTTP/1.x path last set it. Setting a deadline costs a runtime timer
// update per call, and a keep-alive connection would pay several per request
// for deadlines that move by microseconds; a deadline is therefore set
// coarsely: timeout/deadlineSlack later than asked, and left as it is while
// it is still at least timeout away and at most that much later. A timeout
// is thus enforced after between timeout and timeout*(1+1/deadlineSlack),
// never earlier.
//
// Code that sets a connection's deadline without its deadline value (sniff,
// splices, tunnels) does so before the HTTP/1.x loop uses the connection or
// after it has stopped; the zero value means "unknown" and always sets.
type Deadline struct {
	at time.Time // the deadline last set; zero: unknown
}

// deadlineSlack: a deadline may run up to timeout/deadlineSlack late.
const deadlineSlack = 16

// next returns the deadline to set for timeout from now, and false when the
// one already set will do.
func (d *Deadline) next(now time.Time, timeout time.Duration) (time.Time, bool) {
	want := now.Add(timeout)
	slack := timeout / deadlineSlack
	if !d.at.Before(want) && d.at.Sub(want) <= slack {
		return d.at, false
	}
	d.at = want.Add(slack)
	return d.at, true
}

// SetRead makes nc's read deadline timeout from now (coarsely).
func (d *Deadline) SetRead(nc deadliner, now time.Time, timeout time.Duration) {
	if at, ok := d.next(now, timeout); ok {
		nc.SetReadDeadline(at)
	}
}

// SetWrite makes nc's write deadline timeout from now (coarsely).
func (d *Deadline) SetWrite(nc writeDeadliner, now time.Time, timeout time.Duration) {
	if at, ok := d.next(now, timeout); ok {
		nc.SetWriteDeadline(at)
	}
}
