package l7

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/egressd/egressd/l7/internal/h1"
	"github.com/egressd/egressd/rules"
)

// newH2Transport builds the transport that carries allowed h2c streams
// upstream. x/net pools its connections by the request URL's host:port; the
// proxy puts a key there (h2UpstreamKey) naming everything the dial depends
// on, and hands the dial its inputs through the request context.
func (p *Proxy) newH2Transport() *http2.Transport {
	return &http2.Transport{
		AllowHTTP:      true, // h2c upstreams: DialTLSContext returns plain TCP for them
		DialTLSContext: p.dialH2Upstream,
		// Bodies cross as they are: no Accept-Encoding added, nothing
		// decompressed.
		DisableCompression: true,
		IdleConnTimeout:    p.cfg.UpstreamIdle,
		// A pooled connection that went silent (a peer or NAT that dropped
		// it) is pinged and closed rather than left to hang new streams.
		ReadIdleTimeout:   h2UpstreamPingAfter,
		MaxHeaderListSize: uint32(p.cfg.MaxHeaderBytes),
	}
}

// h2UpstreamPingAfter is how long an upstream HTTP/2 connection may stay
// silent before the transport checks it with a PING.
const h2UpstreamPingAfter = 30 * time.Second

// h2Dial is what dialH2Upstream needs to open one upstream connection.
type h2Dial struct {
	m    rules.Match
	host string // authority as requested (port ignored by the dial)
	orig netip.AddrPort
	tls  bool // originate TLS (ALPN h2): the rule marks the port HTTPS
	// h1 allows the HTTP/1.1 fallback (not gRPC, which needs HTTP/2):
	// the TLS dial offers http/1.1 after h2, and an upstream choosing it
	// makes the dial fail with errUpstreamH1 so the stream goes by h1tr.
	h1 bool
}

// errUpstreamH1 is the h2 dial's failure when an HTTPS upstream chose
// ALPN http/1.1: forwardH2 sends the stream as HTTP/1.1 instead.
var errUpstreamH1 = errors.New("the upstream chose HTTP/1.1")

// h1OnlyFor is how long an upstream that chose http/1.1 is sent HTTP/1.1
// without asking again (one extra TLS handshake per upstream and period):
// an upstream that starts offering h2 is used as h2 after at most this.
const h1OnlyFor = 10 * time.Minute

type h2DialKey struct{}

// h2UpstreamKey names the upstream connection pool of d: streams with equal
// keys may share a connection. What the dial depends on besides the host
// is spelt in upper case before it, so that no host (lower-cased here) can
// spell another dial's key: "tls.x" on a plain port is not x on a TLS one. It has the form of a host:port because x/net
// parses it as one; it is never resolved.
func (p *Proxy) h2UpstreamKey(d *h2Dial) string {
	var b strings.Builder
	b.Grow(len(d.host) + 48)
	if d.tls {
		b.WriteString("TLS.")
	}
	if d.m.UseEgressProxy {
		b.WriteString("VIA-PROXY.")
	}
	if ruleLiteral(d.m).IsValid() {
		// Dialled under the allowance of a rule naming the IP (the host)
		// literally: not for streams whose rule does not give it
		// (pool.Key.Literal).
		b.WriteString("LITERAL.")
	}
	if p.cfg.DialMode == DialOriginal {
		// Colons of an IPv6 address would split the host:port form.
		b.WriteString(strings.ReplaceAll(d.orig.Addr().String(), ":", "-"))
		b.WriteString(".IP.")
	}
	b.WriteString(strings.ToLower(strings.TrimSuffix(hostOnly(d.host), ".")))
	b.WriteByte(':')
	b.WriteString(strconv.Itoa(int(d.orig.Port())))
	return b.String()
}

// dialH2Upstream opens an upstream connection for the first stream of a pool
// key: plain TCP for h2c, or TLS with ALPN h2 for HTTPS ports. ctx is that
// stream's request context, carrying its h2Dial.
func (p *Proxy) dialH2Upstream(ctx context.Context, _, _ string, _ *tls.Config) (net.Conn, error) {
	d, ok := ctx.Value(h2DialKey{}).(*h2Dial)
	if !ok {
		return nil, errors.New("h2 upstream dial without its parameters")
	}
	nc, err := p.dialUpstream(ctx, d.m, d.host, d.orig)
	if err != nil {
		return nil, err
	}
	if !d.tls {
		return clampUpstreamSettings(nc), nil // h2c_settings.go
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.ConnectTimeout)
	defer cancel()
	alpn := []string{http2.NextProtoTLS}
	if d.h1 {
		alpn = append(alpn, "http/1.1")
	}
	tc := tls.Client(nc, p.tlsConfig(hostOnly(d.host), alpn))
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		if !d.h1 && strings.Contains(err.Error(), "no application protocol") {
			return nil, fmt.Errorf("tls handshake with %s: %w (the upstream refuses ALPN h2; gRPC needs HTTP/2, so its streams are not sent as HTTP/1.1)", hostOnly(d.host), err)
		}
		return nil, fmt.Errorf("tls handshake with %s: %w", hostOnly(d.host), err)
	}
	proto := tc.ConnectionState().NegotiatedProtocol
	if d.h1 && (proto == "http/1.1" || proto == "") { // no ALPN: an HTTP/1.1 server from before it
		tc.Close()
		p.h2c().h1Only.Store(p.h2UpstreamKey(d), time.Now().Add(h1OnlyFor))
		return nil, errUpstreamH1
	}
	if proto != http2.NextProtoTLS {
		tc.Close()
		if d.h1 {
			return nil, fmt.Errorf("%w: %s negotiated ALPN %q, neither h2 nor http/1.1 (the upstream offers no HTTP over TLS that egressd can forward to)", h1.ErrMalformedResponse, hostOnly(d.host), proto)
		}
		return nil, fmt.Errorf("%w: %s negotiated ALPN %q, not h2 (the upstream does not offer HTTP/2 over TLS; gRPC needs HTTP/2, so its streams are not sent as HTTP/1.1)", h1.ErrMalformedResponse, hostOnly(d.host), proto)
	}
	return clampUpstreamSettings(tc), nil
}

// dialH1Upstream opens a TLS connection with ALPN http/1.1 for h1tr (the
// HTTP/1.1 fallback of an HTTPS upstream without h2).
func (p *Proxy) dialH1Upstream(ctx context.Context, _, _ string) (net.Conn, error) {
	d, ok := ctx.Value(h2DialKey{}).(*h2Dial)
	if !ok {
		return nil, errors.New("h1 upstream dial without its parameters")
	}
	nc, err := p.dialUpstream(ctx, d.m, d.host, d.orig)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.ConnectTimeout)
	defer cancel()
	tc := tls.Client(nc, p.tlsConfig(hostOnly(d.host), []string{"http/1.1"}))
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, fmt.Errorf("tls handshake with %s: %w", hostOnly(d.host), err)
	}
	return tc, nil
}

// newH1Transport builds the transport of the HTTP/1.1 fallback: pooled by
// the same keys as the h2 transport (h2UpstreamKey), nothing added to the
// request (no User-Agent, no Accept-Encoding), nothing decompressed.
func (p *Proxy) newH1Transport() *http.Transport {
	return &http.Transport{
		DialTLSContext:         p.dialH1Upstream,
		DisableCompression:     true,
		IdleConnTimeout:        p.cfg.UpstreamIdle,
		MaxIdleConnsPerHost:    16,
		MaxResponseHeaderBytes: int64(p.cfg.MaxHeaderBytes),
		ForceAttemptHTTP2:      false,
	}
}

// sendsH1 reports whether streams for key go as HTTP/1.1 (the upstream
// chose http/1.1 less than h1OnlyFor ago).
func (h *h2cProxy) sendsH1(key string) bool {
	v, ok := h.h1Only.Load(key)
	if !ok {
		return false
	}
	if time.Now().After(v.(time.Time)) {
		h.h1Only.CompareAndDelete(key, v)
		return false
	}
	return true
}

// forwardH2 sends an allowed stream upstream and streams the response back:
// both bodies flow as they come (flushed after every write, so gRPC streams
// in both directions), trailers follow, flow control is x/net's.
func (p *Proxy) forwardH2(w http.ResponseWriter, r *http.Request, m rules.Match, grpc bool, e *accessEntry) {
	d := &h2Dial{m: m, host: r.Host, orig: e.orig, tls: m.Port.Protocol == rules.HTTPS}
	d.h1 = d.tls && !grpc
	e.upstream = "http"
	scheme := "http"
	if d.tls {
		e.upstream, scheme = "https", "https"
	}
	ctx, cancel := context.WithCancelCause(context.WithValue(r.Context(), h2DialKey{}, d))
	defer cancel(nil)
	out := r.WithContext(ctx) // shallow copy: the upstream request
	u := *r.URL
	u.Scheme, u.Host = scheme, p.h2UpstreamKey(d)
	out.URL, out.RequestURI, out.Close = &u, "", false
	removeH2HopHeaders(out.Header)
	var body *countingBody
	if r.ContentLength == 0 {
		// The server reports 0 only for a request without DATA frames (or
		// content-length: 0); NoBody lets the transport end the stream with
		// its HEADERS instead of an empty DATA frame.
		out.Body = http.NoBody
	} else {
		body = &countingBody{rc: r.Body}
		out.Body = body
	}
	// ResponseTimeout bounds the wait for the head once the request body
	// is sent; IdleTimeout each stall in the response body (long polls and
	// server-sent events pause inside the body). Not for gRPC: calls carry
	// their own deadline (grpc-timeout), and a stream may rightly stay
	// quiet for long.
	var stall *time.Timer
	var inBody atomic.Bool
	if !grpc {
		stall = time.AfterFunc(p.cfg.ResponseTimeout, func() {
			if inBody.Load() {
				cancel(errBodyStall)
			} else {
				cancel(errResponseTimeout)
			}
		})
		defer stall.Stop()
		if body != nil {
			stall.Stop() // until the client's body is all sent
			body.sent = func() { stall.Reset(p.cfg.ResponseTimeout) }
		}
	}
	h := p.h2c()
	var res *http.Response
	var err error
	if d.h1 && h.sendsH1(u.Host) {
		res, err = h.roundTripH1(out)
	} else {
		res, err = h.tr.RoundTrip(out)
		if errors.Is(err, errUpstreamH1) {
			// The dial failed before the stream was opened: nothing of the
			// body was read.
			res, err = h.roundTripH1(out)
		}
	}
	if body != nil {
		defer func() { e.bytesIn = body.n.Load() }()
	}
	if err != nil {
		p.failH2(ctx, w, r, err, grpc, e)
		return
	}
	defer res.Body.Close()
	e.status = res.StatusCode
	inBody.Store(true)
	err = copyH2Response(w, res, e, stall, p.cfg.IdleTimeout)
	if err == nil {
		if grpc && e.reason == "" { // in the trailers, or in the head of a trailers-only answer
			if e.grpcStatus = res.Trailer.Get("Grpc-Status"); e.grpcStatus == "" {
				e.grpcStatus = res.Header.Get("Grpc-Status")
			}
		}
		return
	}
	if r.Context().Err() != nil {
		e.reason = "client cancelled the stream: " + err.Error()
		return // nothing left to tell it
	}
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		err = cause
	}
	_, e.reason = p.upstreamError(err)
	if !grpc {
		// Reset the client's stream: ending it cleanly would pass a
		// truncated response as complete.
		panic(http.ErrAbortHandler)
	}
	// A gRPC client learns the outcome from trailers; give it the status
	// it would have seen talking to the upstream itself.
	setGRPCStatus(w, e, true, grpcFailureCode(err, http.StatusBadGateway, r, e.start), e.reason)
}

var (
	errResponseTimeout = fmt.Errorf("upstream silent for the response timeout: %w", context.DeadlineExceeded)
	errBodyStall       = fmt.Errorf("upstream silent for the idle timeout inside the response body: %w", context.DeadlineExceeded)
)

// failH2 answers a stream whose upstream exchange failed before a response
// head: 502/504 (gRPC: UNAVAILABLE/DEADLINE_EXCEEDED), or nothing when the
// client is gone.
func (p *Proxy) failH2(ctx context.Context, w http.ResponseWriter, r *http.Request, err error, grpc bool, e *accessEntry) {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		err = cause // our response timeout, not the transport's wrapping of it
	}
	if r.Context().Err() != nil {
		e.reason = "client cancelled the stream: " + err.Error()
		return
	}
	status, reason := p.upstreamError(err)
	e.reason = reason
	if grpc {
		w.Header().Set("X-Egressd", markerError)
		setGRPCStatus(w, e, false, grpcFailureCode(err, status, r, e.start), reason)
		return
	}
	writeLocalH2(w, e, false, status, reason)
}

// copyH2Response writes res to w: head (flushed at once when the body's
// length is unknown: a stream; with the body's first bytes when it is
// known; never alone when it is known to be empty, so that trailers-only
// gRPC answers stay one HEADERS frame), then the body flushed per read
// (but the read that completes a known length), then the trailers. stall, when
// not nil, is reset to timeout after every read. It returns the upstream's
// failure; a client that went away only ends the copy (e.reason).
func copyH2Response(w http.ResponseWriter, res *http.Response, e *accessEntry, stall *time.Timer, timeout time.Duration) error {
	h := w.Header()
	for k, vv := range res.Header {
		h[k] = vv
	}
	removeH2HopHeaders(h)
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
	bufp := h2BufPool.Get().(*[]byte)
	defer h2BufPool.Put(bufp)
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
				e.reason = "client stream closed: " + werr.Error()
				return nil
			}
			e.bytesOut += int64(n)
			if fl != nil && !(sized && e.bytesOut >= res.ContentLength) {
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

var h2BufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// removeH2HopHeaders deletes the hop-by-hop fields that must not cross the
// proxy. HTTP/2 already forbids the connection-specific ones; "TE: trailers"
// is end to end (gRPC needs it) and stays.
func removeH2HopHeaders(h http.Header) {
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

// roundTripH1 sends an h2c client's stream to an HTTPS upstream as
// HTTP/1.1 (h1tr; its pool is keyed, like the h2 transport's, by out.URL's
// host). Framing is net/http's: Content-Length when the client's stream
// declared one, chunked otherwise, trailers after a chunked body.
func (h *h2cProxy) roundTripH1(out *http.Request) (*http.Response, error) {
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = nil // net/http would send its own
	}
	return h.h1tr.RoundTrip(out)
}
