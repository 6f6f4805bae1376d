package http1

import (
	"bufio"
	"errors"
	"syscall"
	"time"

	"github.com/egressd/egressd/l7/internal/body"
	"github.com/egressd/egressd/l7/internal/dialer"
	"github.com/egressd/egressd/l7/internal/h1"
	"github.com/egressd/egressd/rules"
)

var (
	errConnReset  = syscall.ECONNRESET
	errBrokenPipe = syscall.EPIPE
)

// Response body framings (RFC 9112 6.3).
const (
	bodyNone = iota
	bodyLength
	bodyChunked
	bodyUntilClose
)

// relayResponse writes the final response head and body to the client and
// returns uc to the pool when it can carry another request. up is the
// request body's upload, nil without a body: a response that comes before
// the body was sent whole says Connection: close, the body goes on being
// sent while it is relayed (full duplex), and what remains of it when the
// response has ended is cut.
func (s *h1conn) relayResponse(uc *upConn, up *upload) bool {
	r, resp := &s.req, &s.resp
	framing := bodyUntilClose
	switch {
	case string(r.Bytes(r.Method)) == "HEAD" || resp.Status == 204 || resp.Status == 304:
		framing = bodyNone
	case resp.Minor == 0 && resp.TeFields > 0:
		framing = bodyUntilClose // HTTP/1.0 has no Transfer-Encoding (RFC 9112 6.1; net/http reads so too)
	case resp.Chunked && (!resp.TeOther || resp.TeCodings):
		framing = bodyChunked // "gzip, chunked" too: the client decodes gzip
	case resp.TeOther:
		framing = bodyUntilClose
	case resp.ContentLength >= 0:
		framing = bodyLength
	}
	reframe := framing == bodyChunked && r.Minor == 1
	early := up != nil && !up.headArrived()
	keep := s.keepAlive() && framing != bodyUntilClose && (framing != bodyChunked || reframe) && !early
	reusable := framing != bodyUntilClose && !resp.ConnClose && resp.Minor == 1 &&
		!(resp.Chunked && resp.ContentLength >= 0) // ambiguous framing: do not trust the rest
	s.writeResponseHead(reframe, !keep)

	pm := body.Pump{Dst: s.c.BW, DstConn: s.c.NC, DstDL: &s.c.WDL, Src: uc.BR, SrcConn: uc.NC, SrcDL: &uc.RDL, Stall: s.srv.cfg.IdleTimeout, MaxLines: s.srv.cfg.MaxHeaderBytes}
	var err error
	switch framing {
	case bodyLength:
		err = pm.CopyN(resp.ContentLength)
	case bodyChunked:
		err = pm.CopyChunked(reframe)
	case bodyUntilClose:
		err = pm.CopyUntilEOF()
	}
	s.entry.Status = resp.Status
	s.entry.BytesOut = pm.N
	if up != nil && !s.finishUpload(up, uc) {
		keep, reusable = false, false
	}
	// Before uc can go back to the pool: the watch would close it.
	gone := s.watch.stop()
	if err != nil {
		uc.NC.Close()
		var ce *body.CopyError
		if gone {
			s.entry.Reason = "client went away during the response body"
		} else if errors.As(err, &ce) && !ce.Write {
			_, reason := s.srv.host.UpstreamError(err)
			s.entry.Reason = "response body cut: " + reason
		} else {
			s.entry.Reason = "client went away during the response body"
		}
		s.srv.finish(&s.entry)
		return false
	}
	now := time.Now()
	// Bytes after the response (the body of a HEAD answer, a second
	// response) must never reach the next request's client.
	if reusable && uc.BR.Buffered() == 0 && !gone {
		s.srv.pool.Put(uc, s.c.Client.Addr(), now)
	} else {
		uc.NC.Close()
	}
	// Log and count before the last flush: whoever has read the whole
	// response can rely on its log line and metrics being there.
	s.srv.host.Finish(&s.entry, now)
	return s.c.BW.Flush() == nil && keep
}

// writeResponseHead writes the status line and the end-to-end fields of
// s.resp to the client, with framing fields of its own.
func (s *h1conn) writeResponseHead(chunked, close bool) {
	bw, resp := s.c.BW, &s.resp
	s.c.WDL.SetWrite(s.c.NC, time.Now(), s.srv.cfg.IdleTimeout)
	bw.WriteString("HTTP/1.1 ")
	bw.Write(resp.Bytes(resp.Reason))
	bw.WriteString("\r\n")
	writeFields(bw, resp)
	if resp.Status == 101 {
		bw.WriteString("Connection: Upgrade\r\nUpgrade: ")
		bw.Write(resp.Bytes(resp.Upgrade))
		bw.WriteString("\r\n")
	}
	if chunked && resp.TeCodings {
		bw.WriteString("Transfer-Encoding: ")
		bw.Write(resp.Bytes(resp.Te))
		bw.WriteString("\r\n")
	} else if chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	} else if resp.ContentLength >= 0 && !resp.Chunked && resp.Status >= 200 {
		bw.WriteString("Content-Length: ")
		bw.Write(appendUint(s.num[:0], uint64(resp.ContentLength)))
		bw.WriteString("\r\n")
	}
	if close {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
}

// writeFields writes the fields of h that are forwarded as they are.
func writeFields(bw *bufio.Writer, h *h1.Head) {
	for i := range h.Fields {
		f := &h.Fields[i]
		if f.Kind == h1.FieldOther {
			bw.Write(h.Buf[f.Name.Lo:f.Value.Hi])
			bw.WriteString("\r\n")
		}
	}
}

// writeRequestHead writes the request to send upstream: origin-form target,
// Host = the effective authority, end-to-end fields, and framing of its own.
// Through the egress proxy (via non-nil) the target is in absolute form and
// the egress proxy's Proxy-Authorization is added (l7/internal/dialer).
func (s *h1conn) writeRequestHead(bw *bufio.Writer, via *dialer.EgressProxy) {
	r := &s.req
	bw.Write(r.Bytes(r.Method))
	bw.WriteByte(' ')
	if via != nil {
		s.writeProxyTarget(bw)
	} else {
		if path := r.Bytes(r.Path); len(path) == 0 || path[0] != '/' && path[0] != '*' {
			bw.WriteByte('/')
		}
		bw.Write(r.Bytes(r.Path))
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.Write(r.Bytes(r.Authority))
	bw.WriteString("\r\n")
	if via != nil {
		via.WriteAuth(bw)
	}
	writeFields(bw, &r.Head)
	if r.TeTrailers {
		bw.WriteString("TE: trailers\r\n")
	}
	if r.ExpectContinue && r.Minor == 1 && r.HasBody() { // the upstream's 100 (or refusal) is relayed
		bw.WriteString("Expect: 100-continue\r\n")
	}
	if r.WantsUpgrade() {
		bw.WriteString("Connection: Upgrade\r\nUpgrade: ")
		bw.Write(r.Bytes(r.Upgrade))
		bw.WriteString("\r\n")
	}
	if r.Chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	} else if r.ContentLength >= 0 {
		bw.WriteString("Content-Length: ")
		bw.Write(appendUint(s.num[:0], uint64(r.ContentLength)))
		bw.WriteString("\r\n")
	}
	bw.WriteString("\r\n")
}

// writeProxyTarget writes the current request's absolute-form target for
// the egress proxy (dialer.WriteTarget), on the original destination port
// it was matched on.
func (s *h1conn) writeProxyTarget(bw *bufio.Writer) {
	r := &s.req
	dialer.WriteTarget(bw, rules.HostOnly(string(r.Bytes(r.Authority))), s.entry.Port, r.Bytes(r.Path))
}

// errProxyAuth: the egress proxy answered a plain request with 407.
var errProxyAuth = errors.New("answered 407 Proxy Authentication Required: check the credentials in the egress proxy URL")
