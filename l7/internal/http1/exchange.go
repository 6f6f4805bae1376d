package http1

import (
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/egressd/egressd/l7/internal/body"
	"github.com/egressd/egressd/l7/internal/client"
	"github.com/egressd/egressd/l7/internal/h1"
)

// exchange does one request/response on uc. keep: the client connection
// stays usable; retry: uc was a reused connection that failed before a
// byte of response, and the request may be sent again on a new one.
//
// The request head is sent first; a body follows from its own goroutine
// (upload.go) while this one reads the response, relaying 1xx responses
// (the upstream's own 100 Continue among them: egressd passes Expect:
// 100-continue on and never answers it itself) and then the final one.
// ResponseTimeout bounds the wait for the head from the end of the body
// (or of the head, without one); 1xx responses do not restart it.
func (s *h1conn) exchange(uc *upConn) (keep, retry bool) {
	r := &s.req
	now := time.Now()
	uc.WDL.SetWrite(uc.NC, now, s.srv.cfg.IdleTimeout)
	s.writeRequestHead(uc.BW, uc.Via)
	s.resp.Buf = s.resp.Buf[:0] // stays empty until a byte of the response arrives
	s.watch.begin(s, uc)
	defer s.watch.stop()
	var up *upload
	var err error
	if r.HasBody() {
		if err = uc.BW.Flush(); err == nil {
			uc.RDL = body.Deadline{}
			uc.NC.SetReadDeadline(time.Time{}) // the body's stalls bound the wait until it is sent
			up = s.startUpload(uc)
		}
	} else {
		uc.RDL.SetRead(uc.NC, now, s.srv.cfg.ResponseTimeout)
		s.watch.arm(now)
		err = flushHead(uc) // and wait for the answer (headwrite.go)
	}
	if err == nil {
		err = s.readHeads(uc)
	}
	if err != nil {
		uc.NC.Close()
		return s.exchangeFailed(uc, up, err)
	}
	if s.resp.Status == 101 {
		if up != nil || !r.WantsUpgrade() {
			uc.NC.Close()
			if up != nil {
				s.finishUpload(up, uc)
			}
			s.local(502, "invalid upstream response: 101 without an Upgrade request", client.MarkerError, true)
			return false, false
		}
		if s.watch.stop() {
			uc.NC.Close()
			s.clientGone()
			return false, false
		}
		s.spliceUpgrade(uc)
		return false, false
	}
	return s.relayResponse(uc, up), false
}

// exchangeFailed answers a request whose exchange on uc (now closed)
// failed before a final response head: a retry when allowed, nothing when
// the client left, the client's own fault (its body), or 502/504.
func (s *h1conn) exchangeFailed(uc *upConn, up *upload, err error) (keep, retry bool) {
	bodySent := true
	if up != nil {
		bodySent = s.finishUpload(up, uc)
		var ce *body.CopyError
		if up.err != nil && !(errors.As(up.err, &ce) && ce.Write) && !up.stop.Load() {
			return s.bodyFailed(up.err), false
		}
	}
	if s.watch.stop() {
		s.clientGone()
		return false, false
	}
	// A reused connection the upstream closed, or a new one to the egress
	// proxy that a gateway going away closed: tried once more on a new
	// connection (to the egress proxy again, never direct).
	if up == nil && (uc.Reused || (uc.Via != nil && !s.retrying)) && len(s.resp.Buf) == 0 && isRetryable(err) && s.req.Replayable() {
		if !uc.Reused {
			s.srv.cfg.OnEgressRetry()
		}
		return false, true
	}
	if !bodySent { // part of the body is unread: the connection cannot carry another request
		status, reason := s.srv.host.UpstreamError(err)
		s.local(status, "upstream failed while receiving the request body: "+reason, client.MarkerError, true)
		return false, false
	}
	return s.upstreamFailed(alpnHint(uc, err, len(s.resp.Buf) == 0), true), false
}

// alpnHint explains an upstream that closed a new TLS connection without a
// byte of response: most often one that speaks only HTTP/2 (egressd's
// HTTP/1.x path offers ALPN http/1.1, and such servers accept the
// handshake without ALPN, then drop the HTTP/1.1 request).
func alpnHint(uc *upConn, err error, nothing bool) error {
	tc, ok := uc.NC.(*tls.Conn)
	if !ok || uc.Reused || !nothing || !body.IsEOF(err) {
		return err
	}
	return fmt.Errorf("%w (the upstream closed a new TLS connection without answering an HTTP/1.1 request; ALPN offered http/1.1, negotiated %q: it may speak only HTTP/2, which HTTPS rules on HTTP ports do not originate)",
		err, tc.ConnectionState().NegotiatedProtocol)
}

// clientGone logs a request whose client went away before its answer.
func (s *h1conn) clientGone() {
	s.entry.Status = 0
	s.entry.Reason = "client went away while waiting for the response"
	s.srv.finish(&s.entry)
}

// max1xx is the most interim (1xx) responses accepted before the final one
// (net/http's Transport allows 5).
const max1xx = 5

// readHeads reads response heads up to the final one (or a 101), relaying
// the 1xx ones to HTTP/1.1 clients.
func (s *h1conn) readHeads(uc *upConn) error {
	for n := 0; ; n++ {
		if err := s.readResponseHead(uc); err != nil {
			return err
		}
		if s.resp.Status >= 200 || s.resp.Status == 101 {
			return nil
		}
		if n == max1xx {
			return errors.Join(h1.ErrMalformedResponse, errors.New("too many 1xx responses"))
		}
		if s.req.Minor == 1 {
			s.writeResponseHead(false, false)
			if err := s.c.BW.Flush(); err != nil {
				return err
			}
		}
	}
}

// readResponseHead reads and parses one response head (under the read
// deadline the caller set).
func (s *h1conn) readResponseHead(uc *upConn) error {
	if err := s.resp.ReadHead(uc.BR, s.srv.cfg.MaxHeaderBytes); err != nil {
		if errors.Is(err, h1.ErrHeadTooLarge) || errors.Is(err, h1.ErrBareLF) || errors.Is(err, h1.ErrMalformed) {
			return errors.Join(h1.ErrMalformedResponse, err)
		}
		return err
	}
	if err := s.resp.ParseResponse(); err != nil {
		return err
	}
	if uc.Via != nil && s.resp.Status == 407 { // the egress proxy refused us, not the upstream
		return uc.Via.Fail(errProxyAuth)
	}
	return nil
}

// upstreamFailed answers 502/504 for an upstream that could not be reached
// or failed before a response head was relayed.
func (s *h1conn) upstreamFailed(err error, bodyRead bool) bool {
	status, reason := s.srv.host.UpstreamError(err)
	keep := s.keepAlive() && (bodyRead || s.discardBody())
	s.local(status, reason, client.MarkerError, !keep)
	return keep
}

// bodyFailed handles a request body that could not be read from the client.
func (s *h1conn) bodyFailed(err error) bool {
	if errors.Is(err, body.ErrBadChunk) {
		s.entry.Decision = client.DecisionInvalid
		s.local(400, "invalid chunked request body", client.MarkerInvalid, true)
		return false
	}
	s.entry.Reason = "client went away during the request body"
	s.srv.finish(&s.entry)
	return false
}
