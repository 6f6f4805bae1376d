package http1

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/egressd/egressd/l7/internal/body"
)

// An upload sends a request body upstream from its own goroutine, so that
// the serving goroutine reads the response meanwhile (full duplex, as
// net/http's persistConn writeLoop and readLoop): an upstream that answers
// before the end of the body (401, 413, an Expect: 100-continue refusal)
// has its answer relayed instead of a 502, and 1xx responses reach the
// client while the body is held back.
//
// The goroutine owns the client's reader and read deadline and the
// upstream's writer and write deadline until done is closed; the serving
// goroutine keeps the other two directions.
type upload struct {
	done chan struct{}
	err  error // the pump's; valid after done
	n    int64 // body bytes moved; valid after done
	stop atomic.Bool

	mu       sync.Mutex
	headSeen bool // the final response head was read: the upload leaves the read deadline alone
}

// aLongTimeAgo is a deadline that fails blocked I/O at once.
var aLongTimeAgo = time.Unix(1, 0)

// startUpload starts sending s.req's body to uc. When it ends normally, or
// the upstream stops taking it, the wait for the response head is bounded
// by ResponseTimeout from then on (until then by the body's own stalls:
// IdleTimeout on either side). When the client side fails (gone, stalled,
// bad chunk), uc is closed: the upstream must not take a cut body for a
// whole one, and the response wait ends.
func (s *h1conn) startUpload(uc *upConn) *upload {
	up := &upload{done: make(chan struct{})}
	pm := s.clientPump(uc)
	pm.Stop = &up.stop
	r := &s.req
	timeout := s.srv.cfg.ResponseTimeout
	go func() {
		err := pm.RequestBody(r)
		if err == nil {
			uc.WDL.SetWrite(uc.NC, time.Now(), s.srv.cfg.IdleTimeout)
			if ferr := uc.BW.Flush(); ferr != nil {
				err = &body.CopyError{Write: true, Err: ferr}
			}
		}
		var ce *body.CopyError
		clientSide := err != nil && !(errors.As(err, &ce) && ce.Write)
		up.mu.Lock()
		if !up.headSeen && !clientSide {
			uc.NC.SetReadDeadline(time.Now().Add(timeout))
		}
		up.mu.Unlock()
		if clientSide && !up.stop.Load() {
			uc.NC.Close()
		}
		up.err, up.n = err, pm.N
		close(up.done)
		if err == nil {
			s.watch.arm(time.Now()) // the client's reader is free: watch it for a close
		}
	}()
	return up
}

// headArrived tells the upload that the final response head was read, and
// reports whether the body had been sent whole by then (waiting a little
// for its last bytes: an upstream that answers once it has read the body
// may be quicker than the upload's goroutine).
func (up *upload) headArrived() (finished bool) {
	up.mu.Lock()
	up.headSeen = true
	up.mu.Unlock()
	up.wait()
	select {
	case <-up.done:
		return up.err == nil
	default:
		return false
	}
}

// uploadGrace is how long the end of a response waits for the end of its
// upload before cutting it (net/http's Transport waits 50 ms before it
// gives up reusing a connection whose request is still being written).
const uploadGrace = 50 * time.Millisecond

// wait waits for the upload to end, up to uploadGrace.
func (up *upload) wait() {
	select {
	case <-up.done:
		return
	default:
	}
	t := time.NewTimer(uploadGrace)
	defer t.Stop()
	select {
	case <-up.done:
	case <-t.C:
	}
}

// finish waits for the upload, cutting it first if it still runs, and
// reports whether the whole body went upstream. The connections' deadlines
// it may have moved are marked unknown.
func (s *h1conn) finishUpload(up *upload, uc *upConn) bool {
	up.wait()
	select {
	case <-up.done:
	default:
		up.stop.Store(true)
		s.c.NC.SetReadDeadline(aLongTimeAgo)
		uc.NC.SetWriteDeadline(aLongTimeAgo)
		<-up.done
		s.c.RDL, uc.WDL = body.Deadline{}, body.Deadline{}
	}
	uc.RDL = body.Deadline{}
	s.entry.BytesIn = up.n
	ok := up.err == nil && !up.stop.Load()
	if !ok {
		s.c.Linger = true // the rest of the body is unread: a reset must not eat the response
	}
	return ok
}
