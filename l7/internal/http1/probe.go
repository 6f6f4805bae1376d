package http1

import (
	"crypto/tls"
	"time"

	"github.com/egressd/egressd/l7/internal/body"
	"github.com/egressd/egressd/l7/internal/probe"
)

// usable reports whether a connection taken from the pool may carry a
// request: nothing arrived on it while it was idle. An upstream that closed
// it (EOF, reset), answered 408 before closing, or wrote anything else a
// client never asked for (the rest of a HEAD response sent with a body)
// must not have those bytes read as the next client's response. This is
// the check net/http's persistConn does with a background read while
// idle, done instead on every reuse: one non-blocking MSG_PEEK on the
// socket (plain TCP), or a TLS read with an expired deadline first (TLS:
// records already read into the TLS layer) — a record there or in the
// socket must be a session ticket (TLS 1.3 sends them after the
// handshake), never application data.
func (uc *upConn) usable() bool {
	if uc.BR.Buffered() > 0 {
		return false // never pooled so; checked for what came through br
	}
	tc, isTLS := uc.NC.(*tls.Conn)
	if uc.peeker == nil {
		raw := uc.NC
		if isTLS {
			raw = tc.NetConn()
		}
		uc.peeker = probe.NewSocket(raw)
	}
	if !isTLS {
		return uc.peeker.Peek() == probe.Nothing
	}
	waiting := uc.peeker.Peek() // first: the probes below move the deadline
	if waiting == probe.Closed {
		return false
	}
	uc.RDL = body.Deadline{} // unknown from here on: the next setRead sets it
	if !probe.TLSQuiet(tc, time.Unix(1, 0)) {
		return false
	}
	if waiting == probe.Nothing {
		return true
	}
	// Bytes arrived: read them through TLS, briefly (a ticket is small).
	if !probe.TLSQuiet(tc, time.Now().Add(probe.TLSWait)) {
		return false
	}
	tc.SetReadDeadline(time.Time{})
	return uc.peeker.Peek() == probe.Nothing
}
