package http1

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"os"
	"sync"
	"time"

	"github.com/egressd/egressd/l7/internal/body"
	"github.com/egressd/egressd/l7/internal/client"
	"github.com/egressd/egressd/l7/internal/h1"
	"github.com/egressd/egressd/l7/internal/metrics"
	"github.com/egressd/egressd/rules"
)

// h1conn is the HTTP/1.x state of one client connection, reused for every
// request on it.
type h1conn struct {
	srv      *Server
	c        *client.Conn
	req      h1.Request
	resp     h1.Head
	entry    client.Entry
	mc       metrics.RequestCache // the previous request's collectors
	retrying bool                 // forward is on its second attempt: no further retry
	watch    *clientWatch         // watch.go: a client leaving during an exchange; kept by release
	scratch  []byte               // body of the proxy's own responses
	num      [24]byte             // number formatting

	clientText, origText string // for the access log, formatted once
	lastHost             string // the previous request's authority, reused when repeated
	canonOf, canon       string // rules.CanonicalHost(canonOf), for the pool key
	// first: the next request is the connection's first, whose head must
	// arrive within ReadHeaderTimeout of accept (not of its first byte).
	first bool
	// shed: wait for the next request on a new goroutine (shedAfter);
	// waited: when the wait for the request being read began (zero: it
	// was buffered).
	shed   bool
	waited time.Time
}

// hostString returns b as a string, without allocating when it repeats the
// previous request's authority (the common case on a keep-alive connection).
func (s *h1conn) hostString(b []byte) string {
	if string(b) != s.lastHost {
		s.lastHost = string(b)
	}
	return s.lastHost
}

// canonicalHost returns rules.CanonicalHost(host), computed again only when
// host is not the previous request's (hostString makes a repeated one the
// same string, so the comparison is a pointer's).
func (s *h1conn) canonicalHost(host string) string {
	if host != s.canonOf {
		s.canonOf, s.canon = host, rules.CanonicalHost(host)
	}
	return s.canon
}

// Serve serves HTTP/1.x requests on c, one after the other (pipelined
// ones too), each decided on its own, until the connection ends. c.BR
// holds the first bytes; on a gateway connection (c.Gateway) the requests
// are a proxy's: CONNECT and absolute form (gateway.go).
//
// Serve returns false when c is done, and true when it has handed the
// wait for c's next request to a new goroutine (Host.Go, which ends c when
// that is done): an idle connection then holds a small stack, not the
// one its last request grew (see shedAfter).
func (srv *Server) Serve(c *client.Conn) (handedOff bool) {
	orig := c.Orig
	if c.Gateway { // no original destination: where the client connected (gatewayDecide logs the target)
		orig = c.Local
	}
	s := (&parked{srv: srv, c: c, clientText: c.Client.String(), origText: orig.String(), first: true}).conn()
	return s.run(false)
}

// shedAfter: a connection whose last wait for a request lasted longer
// waits for its next one on a new goroutine, as does every connection for
// its second request. The serving goroutine's stack grows to 8-16 KiB with
// a request (measured: 12 KiB per idle keep-alive connection, 8 KiB after
// two GCs) and shrinks only at a GC, by half; a new goroutine waits on
// 2 KiB and grows its stack again for the request that wakes it (a few
// copies, microseconds). Connections that send requests back to back keep
// their goroutine.
const shedAfter = time.Second

// run serves requests until the connection ends (false: s is released) or
// until the wait for the next one is handed to a new goroutine (true).
// ready: the wait for the next request is over (its bytes are in the
// socket, not yet in c.BR).
//
// Not "until Shutdown": a response that promised keep-alive before
// Shutdown began may already have its next request on the way, which
// must be answered (with "Connection: close"), not reset; an idle
// connection is closed by Shutdown after its grace.
func (s *h1conn) run(ready bool) bool {
	for ; ; ready = false {
		if !ready && s.c.BR.Buffered() == 0 {
			if s.shed {
				k := s.park()
				k.srv.host.Go(k.c, k.resume)
				return true
			}
			if !s.waitNext() {
				break
			}
		}
		if !s.serveOne() {
			break
		}
	}
	if s.c.Linger && s.c.BW.Flush() == nil {
		s.c.LingerClose()
	}
	s.release()
	return false
}

// parked is what a connection keeps while it waits for its next request
// on a new goroutine: 48 bytes, where its h1conn (~1 KiB with its head
// buffers, field slices and request caches) goes back to h1connPool for
// the connections being served.
type parked struct {
	srv                  *Server
	c                    *client.Conn
	clientText, origText string
	first                bool
}

// conn returns an h1conn from the pool for k's connection, set to shed
// its next wait (its second request's, or one after a long wait).
func (k *parked) conn() *h1conn {
	s := h1connPool.Get().(*h1conn)
	s.srv, s.c, s.clientText, s.origText, s.first, s.shed = k.srv, k.c, k.clientText, k.origText, k.first, true
	if s.watch == nil {
		s.watch = new(clientWatch)
	}
	return s
}

// park releases s, keeping what the connection's next request needs.
func (s *h1conn) park() *parked {
	k := &parked{srv: s.srv, c: s.c, clientText: s.clientText, origText: s.origText, first: s.first}
	s.release()
	return k
}

// resume is run on the new goroutine Host.Go started: the wait for the
// next request, then the requests, on an h1conn from the pool.
func (k *parked) resume() bool {
	since, ok := awaitRequest(k.srv, k.c, k.first)
	if !ok {
		return false
	}
	s := k.conn()
	s.waited = since
	return s.run(true)
}

// waitNext waits for the next request's first bytes, holding no buffer;
// false: the connection ended, timed out or was closed by Shutdown.
func (s *h1conn) waitNext() bool {
	since, ok := awaitRequest(s.srv, s.c, s.first)
	s.waited = since
	return ok
}

// awaitRequest waits for c's next request (its first if first) and says
// when the wait began; false: the connection ended, timed out or was
// closed by Shutdown.
func awaitRequest(srv *Server, c *client.Conn, first bool) (since time.Time, ok bool) {
	if c.BW != nil && c.BW.Buffered() == 0 { // an idle connection holds no write buffer
		c.DropWriter()
	}
	if !c.SetIdle() {
		return time.Time{}, false
	}
	since = time.Now()
	if first {
		c.RDL.SetRead(c.NC, c.Start, srv.cfg.ReadHeaderTimeout)
	} else {
		c.RDL.SetRead(c.NC, since, srv.cfg.IdleTimeout)
	}
	// Nor a read buffer: it goes back to the pool until the next
	// request's first bytes (4 KiB per idle keep-alive connection).
	var err error
	if ready := c.ReadySocket(); ready.CanWait() {
		c.DropReader()
		err = ready.Wait()
		c.TakeReader()
	} else {
		_, err = c.BR.Peek(1)
	}
	return since, c.SetActive() && err == nil
}

// h1connPool keeps h1conn values with their head buffers between connections,
// so a new connection does not grow them again.
var h1connPool = sync.Pool{New: func() any { return new(h1conn) }}

// maxPooledHead: larger head buffers are dropped, not kept for everyone.
const maxPooledHead = 16 << 10

func (s *h1conn) release() {
	keep := func(b []byte) []byte {
		if cap(b) > maxPooledHead {
			return nil
		}
		return b[:0]
	}
	*s = h1conn{
		req:     h1.Request{Head: h1.Head{Buf: keep(s.req.Buf), Fields: s.req.Fields[:0]}},
		resp:    h1.Head{Buf: keep(s.resp.Buf), Fields: s.resp.Fields[:0]},
		scratch: keep(s.scratch),
		watch:   s.watch, // its timer may still be set (watch.go)
	}
	h1connPool.Put(s)
}

// serveOne reads, decides and answers one request; false: close.
func (s *h1conn) serveOne() bool {
	c, srv := s.c, s.srv
	first := s.first
	s.first = false
	c.TakeWriter()
	now := time.Now()
	if !s.waited.IsZero() { // it waited for this request: was that long?
		s.shed, s.waited = now.Sub(s.waited) > shedAfter, time.Time{}
	}
	if !headBuffered(c.BR) { // reading the head may block: ReadHeaderTimeout from its first byte, or from accept for the first head
		from := now
		if first {
			from = c.Start
		}
		c.RDL.SetRead(c.NC, from, srv.cfg.ReadHeaderTimeout)
	}
	s.req.Method = h1.Span{}
	s.entry = client.Entry{Start: now, Client: c.Client, Orig: c.Orig, Port: c.Orig.Port(), Protocol: client.ProtoHTTP1,
		ClientText: s.clientText, OrigText: s.origText, Metrics: &s.mc, Scope: &c.Scope}
	err := s.req.ReadHead(c.BR, srv.cfg.MaxHeaderBytes)
	if err == nil {
		err = s.req.Parse()
	}
	if err != nil {
		return s.refuseHead(err)
	}
	if s.req.Minor == 0 {
		s.entry.Protocol = client.ProtoHTTP10
	}
	if c.Gateway { // gateway.go: CONNECT and absolute form, each decided on its own
		return s.serveGatewayRequest()
	}
	if status, reason := s.req.Check(); status != 0 {
		s.entry.Decision = client.DecisionInvalid
		s.local(status, reason, client.MarkerInvalid, true)
		return false
	}
	s.entry.Host = s.hostString(s.req.Bytes(s.req.Authority))
	m, ok := srv.host.Decide(c, &s.entry, s.entry.Host, s.entry.Port)
	if !ok {
		return s.deny()
	}
	s.entry.Decision = client.DecisionAllow
	s.entry.Rule = m.Rule.Name
	return s.forward(m)
}

// headBuffered reports whether br holds a whole request head already, so
// that reading it cannot block (then its read deadline need not move). A
// head behind leading empty lines does not count: readHead skips them.
// Most often the buffer ends with the head (a request without a body,
// not pipelined): that is checked first, without scanning it (a scan of
// a 100-byte head was ~600 instructions, 3 % of the proxy's per request).
func headBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	return len(b) > 0 && b[0] != '\r' && b[0] != '\n' && (bytes.HasSuffix(b, crlfCRLF) || bytes.Contains(b, crlfCRLF))
}

var crlfCRLF = []byte("\r\n\r\n")

// refuseHead answers a head that could not be read or parsed, and closes.
func (s *h1conn) refuseHead(err error) bool {
	var status int
	var reason string
	var ne net.Error
	switch {
	case errors.Is(err, h1.ErrHeadTooLarge):
		status, reason = 431, "request head larger than the limit"
	case errors.Is(err, h1.ErrBareLF):
		status, reason = 400, "request head lines must end in CRLF"
	case errors.Is(err, h1.ErrVersion):
		status, reason = 505, "only HTTP/1.0 and HTTP/1.1 are supported here"
	case errors.Is(err, h1.ErrMalformed):
		status, reason = 400, "malformed request head"
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		status, reason = 408, "request head not received in time"
	default:
		return false // the client went away
	}
	s.entry.Decision = client.DecisionInvalid
	s.local(status, reason, client.MarkerInvalid, true)
	return false
}

// keepAlive reports whether the client connection may carry another
// request after this one, as far as the request is concerned. During
// Shutdown the answer is no, so the response says "Connection: close".
func (s *h1conn) keepAlive() bool {
	return s.req.Minor == 1 && !s.req.ConnClose && !s.srv.host.Closing()
}

// maxDiscard is the most request body the proxy reads and drops to keep a
// connection usable after answering without forwarding.
const maxDiscard = 256 << 10

// deny answers 403: no rule allows the host on this port.
func (s *h1conn) deny() bool {
	s.entry.Decision = client.DecisionDeny
	s.entry.Reason = "no egress rule allows the host and port"
	keep := s.keepAlive() && s.discardBody()
	b := append(s.scratch[:0], "egressd: no egress rule allows "...)
	b = append(b, rules.HostOnly(s.entry.Host)...)
	b = append(b, " on port "...)
	b = appendUint(b, uint64(s.entry.Port))
	b = append(b, '\n')
	s.scratch = b
	s.writeLocal(403, b, client.MarkerDenied, !keep)
	return keep
}

// discardBody reads and drops a small request body; false: the connection
// cannot be reused (the body is too large, awaits 100-continue, or broken).
func (s *h1conn) discardBody() bool {
	r := &s.req
	if !r.HasBody() {
		return true
	}
	if r.ExpectContinue || r.ContentLength > maxDiscard {
		return false
	}
	pm := s.clientPump(nil)
	pm.Limit = maxDiscard
	err := pm.RequestBody(r)
	s.entry.BytesIn = pm.N
	return err == nil
}

// clientPump reads the request body from the client into uc (nil: discard).
func (s *h1conn) clientPump(uc *upConn) body.Pump {
	pm := body.Pump{Src: s.c.BR, SrcConn: s.c.NC, SrcDL: &s.c.RDL, Stall: s.srv.cfg.IdleTimeout, MaxLines: s.srv.cfg.MaxHeaderBytes}
	if uc != nil {
		pm.Dst, pm.DstConn, pm.DstDL = uc.BW, uc.NC, &uc.WDL
	}
	return pm
}
