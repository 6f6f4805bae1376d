package l7

// Chaining through the egress proxy (Config.EgressProxy) for rules with
// useEgressProxy. Plain HTTP ports send each request in absolute form to the
// egress proxy (forward.go, relay.go call in here); every other upstream
// (TLS originated on HTTPS ports, h2c, gRPC, TLS passthrough) is a CONNECT
// tunnel through it, inside which TLS runs end to end: the egress proxy sees
// the name and port, never the content. A failing egress proxy is a 502;
// there is never a direct connection instead. The egress proxy is always
// given the name (it resolves it), in DialOriginal mode too. Its
// connections are pooled like any upstream's (pool.Key.Proxy; one egress
// proxy per Proxy).

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/egressd/egressd/l7/internal/addrpolicy"
	"github.com/egressd/egressd/l7/internal/body"
	"github.com/egressd/egressd/rules"
)

// egressProxy is the parsed Config.EgressProxy.
type egressProxy struct {
	addr string // host:port to dial
	host string // host name, verified when tls
	tls  bool   // https://: TLS to the egress proxy itself
	auth string // "Basic …" from the URL's userinfo; "" for none
	name string // the URL without its password, for errors and logs
}

// newEgressProxy checks u: http:// or https://, a host, nothing else but
// optional userinfo and port. A nil u gives a nil egressProxy.
func newEgressProxy(u *url.URL) (*egressProxy, error) {
	if u == nil {
		return nil, nil
	}
	ep := &egressProxy{host: u.Hostname(), name: u.Redacted()}
	port := u.Port()
	switch u.Scheme {
	case "http":
		port = cmp.Or(port, "80")
	case "https":
		port, ep.tls = cmp.Or(port, "443"), true
	default:
		return nil, fmt.Errorf("l7: config: egress proxy %s: scheme must be http or https", ep.name)
	}
	if ep.host == "" || u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return nil, fmt.Errorf("l7: config: egress proxy %s: want http[s]://[user:password@]host[:port]", ep.name)
	}
	ep.addr = net.JoinHostPort(ep.host, port)
	if u.User != nil {
		pw, _ := u.User.Password()
		ep.auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(u.User.Username()+":"+pw))
	}
	return ep, nil
}

// CheckEgressProxy is the start-up check of egressd run: with no egress
// proxy configured (egressProxy nil), every rule of set that demands one is
// an error naming them; with one, the URL must be usable.
func CheckEgressProxy(set *rules.Set, egressProxy *url.URL) error {
	if egressProxy != nil {
		_, err := newEgressProxy(egressProxy)
		return err
	}
	var names []string
	for _, r := range set.Rules() {
		if r.UseEgressProxy {
			names = append(names, fmt.Sprintf("%s (%s)", r.Name, r.Source))
		}
	}
	if len(names) == 0 {
		return nil
	}
	return fmt.Errorf("%d rule(s) have useEgressProxy but no egress proxy is configured (give --egress-proxy URL): %s",
		len(names), strings.Join(names, ", "))
}

// egressProxyError is a failure of the egress proxy hop itself: it could not
// be reached, its TLS failed, or it refused (non-2xx CONNECT, 407). It maps
// to 502 with kind "egress_proxy".
type egressProxyError struct {
	proxy string // redacted URL
	err   error
}

func (e *egressProxyError) Error() string { return "egress proxy " + e.proxy + ": " + e.err.Error() }
func (e *egressProxyError) Unwrap() error { return e.err }

func (ep *egressProxy) fail(err error) error { return &egressProxyError{proxy: ep.name, err: err} }

// egressProxyAttempts is how many new connections to the egress proxy
// one request may try: the egress proxy is usually a Service in front of
// several gateways, and one of them going away (a rollout, a node drained)
// refuses or resets the connections still sent to it until its endpoint is
// gone; another connection is sent to another replica. A retry is always
// another connection to the egress proxy, never a direct one.
const egressProxyAttempts = 3

// retryEgressProxy says whether a failed attempt to open a connection (or
// tunnel) to the egress proxy may be tried again: it failed before the
// egress proxy answered anything (refused, reset, closed, unreachable),
// so nothing of the request reached an upstream, and time is left.
func retryEgressProxy(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, errConnReset) || errors.Is(err, errBrokenPipe) ||
		errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) || body.IsEOF(err)
}

// dialEgressProxy opens a connection to the egress proxy itself (TLS for
// https://, verified like any upstream), with Config.Mark, trying another
// connection when one fails before the proxy answered (retryEgressProxy).
func (p *Proxy) dialEgressProxy(ctx context.Context) (net.Conn, error) {
	return p.retryEgress(ctx, p.dialEgressProxyOnce)
}

// retryEgress runs attempt up to egressProxyAttempts times while its
// failures are retryable, counting each retry.
func (p *Proxy) retryEgress(ctx context.Context, attempt func(context.Context) (net.Conn, error)) (net.Conn, error) {
	for n := 1; ; n++ {
		nc, err := attempt(ctx)
		if err == nil || n == egressProxyAttempts || !retryEgressProxy(ctx, err) {
			return nc, err
		}
		p.metrics.egressRetries.Inc()
		p.log.Debug("egress proxy connection failed; trying another", "attempt", n, "error", err)
	}
}

func (p *Proxy) dialEgressProxyOnce(ctx context.Context) (net.Conn, error) {
	ep := p.egress
	if ep == nil {
		return nil, errNoEgressProxy
	}
	// The operator named the egress proxy: an IP literal there is allowed
	// by the address policy like a rule's; the addresses of a name are not.
	nc, err := p.dial(addrpolicy.WithIntent(ctx, addrpolicy.IntentFor(ep.host, ep.host)), "tcp", ep.addr)
	if err != nil {
		return nil, ep.fail(err)
	}
	if ep.tls {
		tc := tls.Client(nc, p.tlsConfig(ep.host, []string{"http/1.1"}))
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, ep.fail(fmt.Errorf("tls handshake: %w", err))
		}
		nc = tc
	}
	return nc, nil
}

// dialViaEgressProxy returns a CONNECT tunnel to host:port through the
// egress proxy, within ConnectTimeout; a CONNECT the proxy closes or
// resets before answering is tried on another connection. The caller
// layers TLS on top.
func (p *Proxy) dialViaEgressProxy(ctx context.Context, host string, port uint16) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.ConnectTimeout)
	defer cancel()
	return p.retryEgress(ctx, func(ctx context.Context) (net.Conn, error) {
		nc, err := p.dialEgressProxyOnce(ctx)
		if err != nil {
			return nil, err
		}
		tc, err := p.egress.connect(ctx, nc, net.JoinHostPort(host, strconv.Itoa(int(port))))
		if err != nil {
			nc.Close()
			return nil, p.egress.fail(err)
		}
		return tc, nil
	})
}

// connect asks the egress proxy on nc for a tunnel to target and reads its
// answer; ctx bounds the exchange.
func (ep *egressProxy) connect(ctx context.Context, nc net.Conn, target string) (net.Conn, error) {
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	var b strings.Builder
	b.WriteString("CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n")
	if ep.auth != "" {
		b.WriteString("Proxy-Authorization: " + ep.auth + "\r\n")
	}
	b.WriteString("\r\n")
	if _, err := nc.Write([]byte(b.String())); err != nil {
		return nil, fmt.Errorf("CONNECT %s: %w", target, ctxErr(ctx, err))
	}
	br := bufio.NewReaderSize(nc, 1024)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return nil, fmt.Errorf("CONNECT %s: reading the answer: %w", target, ctxErr(ctx, err))
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("refused CONNECT %s: %s", target, resp.Status)
	}
	if !stop() {
		return nil, fmt.Errorf("CONNECT %s: %w", target, ctx.Err())
	}
	if br.Buffered() > 0 { // the proxy spoke first for the server: keep those bytes
		return &prereadConn{Conn: nc, r: br}, nil
	}
	return nc, nil
}

// ctxErr prefers ctx's error (timeout) over the I/O error it caused.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return errors.Join(ctx.Err(), err)
	}
	return err
}

// prereadConn is a tunnel whose first bytes were read with the CONNECT
// answer.
type prereadConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *prereadConn) Read(b []byte) (int, error) { return c.r.Read(b) }

func (c *prereadConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// writeProxyTarget writes the absolute-form target of the current request
// for the egress proxy: http://host:port/path, where port is the original
// destination port the request was matched on (the Host field may lack it),
// or http://host/path for port 80.
func (s *h1conn) writeProxyTarget(bw *bufio.Writer) {
	r := &s.req
	host := hostOnly(string(r.Bytes(r.Authority)))
	bw.WriteString("http://")
	if strings.IndexByte(host, ':') >= 0 {
		bw.WriteString("[" + host + "]")
	} else {
		bw.WriteString(host)
	}
	// Port 80 is http's default: left out, so that the Host the proxy
	// forwards (from this authority, RFC 9112 §3.2.2) is the client's.
	if s.entry.port != 80 {
		bw.WriteByte(':')
		bw.Write(appendUint(s.num[:0], uint64(s.entry.port)))
	}
	path := r.Bytes(r.Path)
	switch {
	case len(path) == 1 && path[0] == '*': // OPTIONS * travels as OPTIONS http://host:port
	case len(path) == 0 || path[0] != '/':
		bw.WriteByte('/')
		bw.Write(path)
	default:
		bw.Write(path)
	}
}

// writeAuth writes the Proxy-Authorization field for the egress proxy; the
// client's own is never forwarded (fieldDrop).
func (ep *egressProxy) writeAuth(bw *bufio.Writer) {
	if ep.auth != "" {
		bw.WriteString("Proxy-Authorization: " + ep.auth + "\r\n")
	}
}

// errProxyAuth: the egress proxy answered a plain request with 407.
var errProxyAuth = errors.New("answered 407 Proxy Authentication Required: check the credentials in the egress proxy URL")
