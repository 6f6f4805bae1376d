package http1

import (
	"sync"
	"time"

	"github.com/egressd/egressd/l7/internal/body"
)

// A clientWatch notices a client that goes away while its request waits
// on the upstream (a long poll, a slow answer): it closes the upstream
// connection at once, so that the upstream stops working for nobody, and
// the access log says the client left. It is net/http's background read on
// the server side, started only once an exchange has lasted abandonAfter,
// so that quick requests start no goroutine.
//
// The timer is one per connection and is not stopped or reset per
// exchange (a runtime timer update each way was 0.5-1k instructions per
// keep-alive request, a tenth of the proxy's HTTP/1 path): arming records
// when the exchange began, and sets the timer only when it is not set
// already. When it fires it looks at the exchange armed then: none, and it
// stays unset; one younger than abandonAfter, and it is set again for the
// rest of that exchange's time; else the watch starts. A busy connection
// thus has its timer fire at most once per abandonAfter, and a watch still
// starts abandonAfter after its exchange began.
//
// The watch outlives its connection (h1conn.release keeps it with the
// pooled h1conn): a timer set for a connection that has ended fires
// later and finds no exchange armed, or the next connection's, which it
// treats as its own.
//
// The watch reads the client only while nothing else does: it is armed
// once the request body, if any, has been read whole, and stopped before
// the serving goroutine reads the client again. Bytes of a pipelined
// request end the watch (they stay buffered for the next request).
type clientWatch struct {
	s     *h1conn
	timer *time.Timer

	mu       sync.Mutex
	state    int
	since    time.Time     // when the armed exchange began waiting
	pending  bool          // the timer is set
	uc       *upConn       // closed when the client goes
	done     chan struct{} // closed when a started watch returns
	gone     bool          // the client went away (valid after stop)
	stopping bool
}

// Watch states.
const (
	watchOff     = iota
	watchArmed   // an exchange waits; the timer starts the watch at since+abandonAfter
	watchStarted // the watching goroutine reads the client
)

// abandonAfter: an exchange lasting this long has its client watched.
const abandonAfter = 200 * time.Millisecond

// begin prepares a watch for the exchange on uc; arm starts its timer.
func (w *clientWatch) begin(s *h1conn, uc *upConn) {
	w.mu.Lock()
	w.s, w.uc, w.gone, w.stopping = s, uc, false, false
	w.mu.Unlock()
}

// arm starts watching the exchange, which began waiting at now.
func (w *clientWatch) arm(now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state != watchOff || w.uc == nil {
		return
	}
	w.state, w.since = watchArmed, now
	if w.pending {
		return // it fires at most abandonAfter from now, and looks at since
	}
	w.pending = true
	if w.timer == nil {
		w.timer = time.AfterFunc(abandonAfter, w.fire)
		return
	}
	w.timer.Reset(abandonAfter)
}

// fire runs in the timer's goroutine: it starts the watch of an exchange
// armed for abandonAfter, and reads the client until a byte, an end or
// stop.
func (w *clientWatch) fire() {
	w.mu.Lock()
	w.pending = false
	if w.state != watchArmed {
		w.mu.Unlock()
		return
	}
	if d := abandonAfter - time.Since(w.since); d > 0 { // armed after the timer was set
		w.pending = true
		w.timer.Reset(d)
		w.mu.Unlock()
		return
	}
	w.state = watchStarted
	w.done = make(chan struct{})
	c, uc := w.s.c, w.uc
	w.mu.Unlock()
	c.NC.SetReadDeadline(time.Time{})
	_, err := c.BR.Peek(1)
	w.mu.Lock()
	if err != nil && !w.stopping {
		w.gone = true
		uc.NC.Close()
	}
	close(w.done)
	w.mu.Unlock()
}

// stop ends the watch before the client is read again, and reports
// whether the client went away.
func (w *clientWatch) stop() bool {
	w.mu.Lock()
	if w.state == watchStarted {
		w.stopping = true
		done, c := w.done, w.s.c
		w.mu.Unlock()
		c.NC.SetReadDeadline(aLongTimeAgo)
		<-done
		c.RDL = body.Deadline{}
		w.mu.Lock()
	}
	w.state, w.uc = watchOff, nil
	gone := w.gone
	w.mu.Unlock()
	return gone
}
