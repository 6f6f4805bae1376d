package h2c

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Record is what the client of a stream got, for the access log: Forward
// and WriteLocal fill it in. Start is the caller's: when the stream began.
type Record struct {
	Start             time.Time
	Upstream          string // "http" or "https": how the stream went upstream
	Status            int
	Reason            string // why it failed or ended early; "": it did not
	GRPCStatus        string
	BytesIn, BytesOut int64
}

// Forward sends an allowed stream to d's upstream and streams the response back:
// both bodies flow as they come (flushed after every write, so gRPC streams
// in both directions), trailers follow, flow control is x/net's. A
// response cut after its head resets the client's stream (panics with
// http.ErrAbortHandler, as net/http's handlers do), but for gRPC, whose
// client gets the status in trailers.
//
// d is not changed: a Target sealed for grpc (Seal) may be shared by
// streams; one that is not is sealed here, for this stream only.
func (s *Server) Forward(w http.ResponseWriter, r *http.Request, d *Target, grpc bool, e *Record) {
	s.init()
	if d.key == "" {
		d = Seal(*d, grpc)
	}
	e.Upstream = "http"
	scheme := "http"
	if d.TLS {
		e.Upstream, scheme = "https", "https"
	}
	// The dial finds d in the request context.
	ctx := context.WithValue(r.Context(), targetKey{}, d)
	// ResponseTimeout bounds the wait for the head once the request body
	// is sent; IdleTimeout each stall in the response body (long polls and
	// server-sent events pause inside the body). Not for gRPC: calls carry
	// their own deadline (grpc-timeout), and a stream may rightly stay
	// quiet for long; nor is its context made cancelable (5 allocations
	// per call): a gRPC stream ends with its client's.
	var stall *time.Timer
	var inBody atomic.Bool
	if !grpc {
		var cancel context.CancelCauseFunc
		ctx, cancel = context.WithCancelCause(ctx)
		defer cancel(nil)
		stall = time.AfterFunc(s.cfg.ResponseTimeout, func() {
			if inBody.Load() {
				cancel(errBodyStall)
			} else {
				cancel(errResponseTimeout)
			}
		})
		defer stall.Stop()
	}
	out := r.WithContext(ctx) // shallow copy: the upstream request
	u := *r.URL
	u.Scheme, u.Host = scheme, d.key
	out.URL, out.RequestURI, out.Close = &u, "", false
	removeHopHeaders(out.Header)
	var body *countingBody
	if r.ContentLength == 0 {
		// The server reports 0 only for a request without DATA frames (or
		// content-length: 0); NoBody lets the transport end the stream with
		// its HEADERS instead of an empty DATA frame.
		out.Body = http.NoBody
	} else {
		body = &countingBody{rc: r.Body}
		out.Body = body
		if stall != nil {
			stall.Stop() // until the client's body is all sent
			body.sent = func() { stall.Reset(s.cfg.ResponseTimeout) }
		}
	}
	var res *http.Response
	var err error
	if d.h1 && s.sendsH1(u.Host) {
		res, err = s.roundTripH1(out)
	} else {
		res, err = s.tr.RoundTrip(out)
		if errors.Is(err, errUpstreamH1) {
			// The dial failed before the stream was opened: nothing of the
			// body was read.
			res, err = s.roundTripH1(out)
		}
	}
	if body != nil {
		defer func() { e.BytesIn = body.n.Load() }()
	}
	if err != nil {
		s.fail(ctx, w, r, err, grpc, e)
		return
	}
	defer res.Body.Close()
	e.Status = res.StatusCode
	inBody.Store(true)
	err = copyResponse(w, res, e, stall, s.cfg.IdleTimeout)
	if err == nil {
		if grpc && e.Reason == "" { // in the trailers, or in the head of a trailers-only answer
			if e.GRPCStatus = res.Trailer.Get("Grpc-Status"); e.GRPCStatus == "" {
				e.GRPCStatus = res.Header.Get("Grpc-Status")
			}
		}
		return
	}
	if r.Context().Err() != nil {
		e.Reason = "client cancelled the stream: " + err.Error()
		return // nothing left to tell it
	}
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		err = cause
	}
	_, e.Reason = s.cfg.Upstream.Error(err)
	if !grpc {
		// Reset the client's stream: ending it cleanly would pass a
		// truncated response as complete.
		panic(http.ErrAbortHandler)
	}
	// A gRPC client learns the outcome from trailers; give it the status
	// it would have seen talking to the upstream itself.
	setGRPCStatus(w, e, true, failureCode(err, http.StatusBadGateway, r, e.Start), e.Reason)
}

var (
	errResponseTimeout = fmt.Errorf("upstream silent for the response timeout: %w", context.DeadlineExceeded)
	errBodyStall       = fmt.Errorf("upstream silent for the idle timeout inside the response body: %w", context.DeadlineExceeded)
)

// failH2 answers a stream whose upstream exchange failed before a response
// head: 502/504 (gRPC: UNAVAILABLE/DEADLINE_EXCEEDED), or nothing when the
// client is gone.
func (s *Server) fail(ctx context.Context, w http.ResponseWriter, r *http.Request, err error, grpc bool, e *Record) {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		err = cause // our response timeout, not the transport's wrapping of it
	}
	if r.Context().Err() != nil {
		e.Reason = "client cancelled the stream: " + err.Error()
		return
	}
	status, reason := s.cfg.Upstream.Error(err)
	e.Reason = reason
	if grpc {
		w.Header().Set("X-Egressd", s.cfg.Markers.Error)
		setGRPCStatus(w, e, false, failureCode(err, status, r, e.Start), reason)
		return
	}
	s.WriteLocal(w, e, false, status, reason)
}

// copyH2Response writes res to w: head (flushed at once when the body's
// length is unknown: a stream; with the body's first bytes when it is
// known; never alone when it is known to be empty, so that trailers-only
// gRPC answers stay one HEADERS frame), then the body flushed per read
// (but the read that completes a known length), then the trailers. stall, when
// not nil, is reset to timeout after every read. It returns the upstream's
// failure; a client that went away only ends the copy (e.Reason).
func copyResponse(w http.ResponseWriter, res *http.Response, e *Record, stall *time.Timer, timeout time.Duration) error {
	h := w.Header()
	for k, vv := range res.Header {
		h[k] = vv
	}
	removeHopHeaders(h)
	// x/net moves the upstream's "trailer:" field into res.Trailer's keys;
	// announce them to the client as the upstream did.
	if len(res.Trailer) > 0 {
		h["Trailer"] = slices.Sorted(maps.Keys(res.Trailer))
	}
	// The server would add what the upstream left out; a nil value keeps
	// it out (net/http's convention).
	for _, k := range [...]string{"Content-Type", "Date"} {
		if _, ok := h[k]; !ok {
			h[k] = nil
		}
	}
	w.WriteHeader(res.StatusCode)
	fl, _ := w.(http.Flusher)
	// A body of known length is not a stream: its head leaves with its
	// first bytes and its last bytes with the end of the stream, so that a
	// small answer is one write to the client instead of three (HEADERS,
	// DATA, the empty DATA that ends the stream).
	sized := res.ContentLength > 0
	if res.ContentLength != 0 && !sized && fl != nil {
		fl.Flush()
	}
	bufp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bufp)
	buf := *bufp
	for {
		if stall != nil {
			stall.Reset(timeout)
		}
		n, err := res.Body.Read(buf)
		if stall != nil {
			stall.Stop() // a slow client is not a stalled upstream
		}
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				e.Reason = "client stream closed: " + werr.Error()
				return nil
			}
			e.BytesOut += int64(n)
			if fl != nil && !(sized && e.BytesOut >= res.ContentLength) {
				fl.Flush()
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	for k, vv := range res.Trailer {
		h[http.TrailerPrefix+k] = vv
	}
	return nil
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// removeHopHeaders deletes the hop-by-hop fields that must not cross the
// proxy. HTTP/2 already forbids the connection-specific ones; "TE: trailers"
// is end to end (gRPC needs it) and stays.
func removeHopHeaders(h http.Header) {
	for _, k := range [...]string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
		"Proxy-Authorization", "Transfer-Encoding", "Upgrade"} {
		delete(h, k)
	}
	if te, ok := h["Te"]; ok && !(len(te) == 1 && strings.EqualFold(te[0], "trailers")) {
		delete(h, "Te")
	}
}

// countingBody counts the request body bytes the transport sends upstream
// (read while the transport may still be writing) and calls sent, if set,
// at the end of the body.
type countingBody struct {
	rc   io.ReadCloser
	n    atomic.Int64
	sent func()
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.n.Add(int64(n))
	if err == io.EOF && b.sent != nil {
		b.sent()
	}
	return n, err
}

func (b *countingBody) Close() error { return b.rc.Close() }
