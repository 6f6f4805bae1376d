package h2c

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http2"

	"github.com/egressd/egressd/l7/internal/h1"
	"github.com/egressd/egressd/rules"
)

// Target is an allowed stream's upstream: what its dial depends on.
type Target struct {
	Match   rules.Match    // the rule that allowed it; Upstream.Dial gets it back
	Host    string         // authority as requested (port ignored by the dial)
	Name    string         // Host without port or brackets: TLS server name, pool key
	Orig    netip.AddrPort // original destination; its port is the upstream's
	TLS     bool           // originate TLS (ALPN h2): the rule marks the port HTTPS
	Literal bool           // the rule names the IP literally (the address policy lets it through)
	OrigIP  bool           // --dial=original: the original IP is dialled
	// h1 allows the HTTP/1.1 fallback (not gRPC, which needs HTTP/2):
	// the TLS dial offers http/1.1 after h2, and an upstream choosing it
	// makes the dial fail with errUpstreamH1 so the stream goes by h1tr.
	h1 bool
	// key is Key, computed once by Seal (Forward seals what is not).
	key string
}

// Seal returns t ready for Forward for streams that are gRPC or not: its
// pool key computed once, the HTTP/1.1 fallback allowed for non-gRPC
// streams to HTTPS upstreams. The result is read-only, so the streams of
// one client connection going to the same upstream may share it.
func Seal(t Target, grpc bool) *Target {
	t.h1 = t.TLS && !grpc
	t.key = t.Key()
	return &t
}

// newH2Transport builds the transport that carries allowed h2c streams
// upstream. x/net pools its connections by the request URL's host:port; the
// proxy puts a key there (Target.Key) naming everything the dial depends
// on, and hands the dial its inputs through the request context.
func (s *Server) newH2Transport() *http2.Transport {
	return &http2.Transport{
		AllowHTTP:      true, // h2c upstreams: DialTLSContext returns plain TCP for them
		DialTLSContext: s.dialH2Upstream,
		// Bodies cross as they are: no Accept-Encoding added, nothing
		// decompressed.
		DisableCompression: true,
		IdleConnTimeout:    s.cfg.UpstreamIdle,
		// A pooled connection that went silent (a peer or NAT that dropped
		// it) is pinged and closed rather than left to hang new streams.
		ReadIdleTimeout:   h2UpstreamPingAfter,
		MaxHeaderListSize: uint32(s.cfg.MaxHeaderBytes),
	}
}

// h2UpstreamPingAfter is how long an upstream HTTP/2 connection may stay
// silent before the transport checks it with a PING.
const h2UpstreamPingAfter = 30 * time.Second

// errUpstreamH1 is the h2 dial's failure when an HTTPS upstream chose
// ALPN http/1.1: Forward sends the stream as HTTP/1.1 instead.
var errUpstreamH1 = errors.New("the upstream chose HTTP/1.1")

// h1OnlyFor is how long an upstream that chose http/1.1 is sent HTTP/1.1
// without asking again (one extra TLS handshake per upstream and period):
// an upstream that starts offering h2 is used as h2 after at most this.
const h1OnlyFor = 10 * time.Minute

type targetKey struct{}

// Key names the upstream connection pool of t: streams with equal
// keys may share a connection. What the dial depends on besides the host
// is spelt in upper case before it, so that no host (lower-cased here) can
// spell another dial's key: "tls.x" on a plain port is not x on a TLS one. It has the form of a host:port because x/net
// parses it as one; it is never resolved.
func (t *Target) Key() string {
	var b strings.Builder
	b.Grow(len(t.Name) + 48)
	if t.TLS {
		b.WriteString("TLS.")
	}
	if t.Match.UseEgressProxy {
		b.WriteString("VIA-PROXY.")
	}
	if t.Literal {
		// Dialled under the allowance of a rule naming the IP (the host)
		// literally: not for streams whose rule does not give it
		// (pool.Key.Literal).
		b.WriteString("LITERAL.")
	}
	if t.OrigIP {
		// Colons of an IPv6 address would split the host:port form.
		b.WriteString(strings.ReplaceAll(t.Orig.Addr().String(), ":", "-"))
		b.WriteString(".IP.")
	}
	b.WriteString(strings.ToLower(strings.TrimSuffix(t.Name, ".")))
	b.WriteByte(':')
	b.WriteString(strconv.Itoa(int(t.Orig.Port())))
	return b.String()
}

// dialH2Upstream opens an upstream connection for the first stream of a pool
// key: plain TCP for h2c, or TLS with ALPN h2 for HTTPS ports. ctx is that
// stream's request context, carrying its Target.
func (s *Server) dialH2Upstream(ctx context.Context, _, _ string, _ *tls.Config) (net.Conn, error) {
	d, ok := ctx.Value(targetKey{}).(*Target)
	if !ok {
		return nil, errors.New("h2 upstream dial without its parameters")
	}
	nc, err := s.cfg.Upstream.Dial(ctx, d)
	if err != nil {
		return nil, err
	}
	if !d.TLS {
		return clampUpstreamSettings(nc), nil // settings.go
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
	defer cancel()
	alpn := []string{http2.NextProtoTLS}
	if d.h1 {
		alpn = append(alpn, "http/1.1")
	}
	tc := tls.Client(nc, s.cfg.Upstream.TLSConfig(d.Name, alpn))
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		if !d.h1 && strings.Contains(err.Error(), "no application protocol") {
			return nil, fmt.Errorf("tls handshake with %s: %w (the upstream refuses ALPN h2; gRPC needs HTTP/2, so its streams are not sent as HTTP/1.1)", d.Name, err)
		}
		return nil, fmt.Errorf("tls handshake with %s: %w", d.Name, err)
	}
	proto := tc.ConnectionState().NegotiatedProtocol
	if d.h1 && (proto == "http/1.1" || proto == "") { // no ALPN: an HTTP/1.1 server from before it
		tc.Close()
		s.h1Only.Store(d.key, time.Now().Add(h1OnlyFor))
		return nil, errUpstreamH1
	}
	if proto != http2.NextProtoTLS {
		tc.Close()
		if d.h1 {
			return nil, fmt.Errorf("%w: %s negotiated ALPN %q, neither h2 nor http/1.1 (the upstream offers no HTTP over TLS that egressd can forward to)", h1.ErrMalformedResponse, d.Name, proto)
		}
		return nil, fmt.Errorf("%w: %s negotiated ALPN %q, not h2 (the upstream does not offer HTTP/2 over TLS; gRPC needs HTTP/2, so its streams are not sent as HTTP/1.1)", h1.ErrMalformedResponse, d.Name, proto)
	}
	return clampUpstreamSettings(tc), nil
}

// dialH1Upstream opens a TLS connection with ALPN http/1.1 for h1tr (the
// HTTP/1.1 fallback of an HTTPS upstream without h2).
func (s *Server) dialH1Upstream(ctx context.Context, _, _ string) (net.Conn, error) {
	d, ok := ctx.Value(targetKey{}).(*Target)
	if !ok {
		return nil, errors.New("h1 upstream dial without its parameters")
	}
	nc, err := s.cfg.Upstream.Dial(ctx, d)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
	defer cancel()
	tc := tls.Client(nc, s.cfg.Upstream.TLSConfig(d.Name, []string{"http/1.1"}))
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, fmt.Errorf("tls handshake with %s: %w", d.Name, err)
	}
	return tc, nil
}

// newH1Transport builds the transport of the HTTP/1.1 fallback: pooled by
// the same keys as the h2 transport (Target.Key), nothing added to the
// request (no User-Agent, no Accept-Encoding), nothing decompressed.
func (s *Server) newH1Transport() *http.Transport {
	return &http.Transport{
		DialTLSContext:         s.dialH1Upstream,
		DisableCompression:     true,
		IdleConnTimeout:        s.cfg.UpstreamIdle,
		MaxIdleConnsPerHost:    16,
		MaxResponseHeaderBytes: int64(s.cfg.MaxHeaderBytes),
		ForceAttemptHTTP2:      false,
	}
}

// sendsH1 reports whether streams for key go as HTTP/1.1 (the upstream
// chose http/1.1 less than h1OnlyFor ago).
func (s *Server) sendsH1(key string) bool {
	v, ok := s.h1Only.Load(key)
	if !ok {
		return false
	}
	if time.Now().After(v.(time.Time)) {
		s.h1Only.CompareAndDelete(key, v)
		return false
	}
	return true
}

// roundTripH1 sends an h2c client's stream to an HTTPS upstream as
// HTTP/1.1 (h1tr; its pool is keyed, like the h2 transport's, by out.URL's
// host). Framing is net/http's: Content-Length when the client's stream
// declared one, chunked otherwise, trailers after a chunked body.
func (s *Server) roundTripH1(out *http.Request) (*http.Response, error) {
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = nil // net/http would send its own
	}
	return s.h1tr.RoundTrip(out)
}
