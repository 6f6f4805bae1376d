package l7

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
// so that quick requests pay two timer operations and no goroutine.
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
	uc       *upConn       // closed when the client goes
	done     chan struct{} // closed when a started watch returns
	gone     bool          // the client went away (valid after stop)
	stopping bool
}

// Watch states.
const (
	watchOff     = iota
	watchArmed   // the timer runs
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

func (w *clientWatch) arm() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state != watchOff || w.uc == nil {
		return
	}
	w.state = watchArmed
	if w.timer == nil {
		w.timer = time.AfterFunc(abandonAfter, w.start)
		return
	}
	w.timer.Reset(abandonAfter)
}

// start runs in the timer's goroutine: it reads the client until a byte,
// an end or stop.
func (w *clientWatch) start() {
	w.mu.Lock()
	if w.state != watchArmed {
		w.mu.Unlock()
		return
	}
	w.state = watchStarted
	w.done = make(chan struct{})
	c, uc := w.s.c, w.uc
	w.mu.Unlock()
	c.nc.SetReadDeadline(time.Time{})
	_, err := c.br.Peek(1)
	w.mu.Lock()
	if err != nil && !w.stopping {
		w.gone = true
		uc.nc.Close()
	}
	close(w.done)
	w.mu.Unlock()
}

// stop ends the watch before the client is read again, and reports
// whether the client went away.
func (w *clientWatch) stop() bool {
	w.mu.Lock()
	switch w.state {
	case watchArmed:
		w.timer.Stop() // if it fired, start sees watchOff and returns
	case watchStarted:
		w.stopping = true
		done, c := w.done, w.s.c
		w.mu.Unlock()
		c.nc.SetReadDeadline(aLongTimeAgo)
		<-done
		c.rdl = body.Deadline{}
		w.mu.Lock()
	}
	w.state, w.uc = watchOff, nil
	gone := w.gone
	w.mu.Unlock()
	return gone
}
