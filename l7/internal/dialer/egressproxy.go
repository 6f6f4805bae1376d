package dialer

// Chaining through the egress proxy for rules with useEgressProxy. Plain
// HTTP ports send each request in absolute form on a connection to the
// egress proxy (DialEgressProxy; l7 writes the request); every other
// upstream is a CONNECT tunnel through it (ViaEgressProxy), inside which
// TLS runs end to end: the egress proxy sees the name and port, never the
// content. A failing egress proxy is an EgressProxyError; there is never a
// direct connection instead. The egress proxy is always given the name (it
// resolves it), in the original-destination mode too.

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
)

// EgressProxy is a parsed egress proxy URL.
type EgressProxy struct {
	addr string // host:port to dial
	host string // host name, verified when tls
	tls  bool   // https://: TLS to the egress proxy itself
	auth string // "Basic …" from the URL's userinfo; "" for none
	name string // the URL without its password, for errors and logs
}

// ParseEgressProxy checks u: http:// or https://, a host, nothing else but
// optional userinfo and port. A nil u gives a nil EgressProxy.
func ParseEgressProxy(u *url.URL) (*EgressProxy, error) {
	if u == nil {
		return nil, nil
	}
	ep := &EgressProxy{host: u.Hostname(), name: u.Redacted()}
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

// EgressProxyError is a failure of the egress proxy hop itself: it could not
// be reached, its TLS failed, or it refused (non-2xx CONNECT, 407). l7
// maps it to 502 with kind "egress_proxy".
type EgressProxyError struct {
	proxy string // redacted URL
	err   error
}

func (e *EgressProxyError) Error() string { return "egress proxy " + e.proxy + ": " + e.err.Error() }
func (e *EgressProxyError) Unwrap() error { return e.err }

// Fail wraps err as a failure of the egress proxy hop.
func (ep *EgressProxy) Fail(err error) error { return &EgressProxyError{proxy: ep.name, err: err} }

// EgressProxyAttempts is how many new connections to the egress proxy
// one request may try: the egress proxy is usually a Service in front of
// several gateways, and one of them going away (a rollout, a node drained)
// refuses or resets the connections still sent to it until its endpoint is
// gone; another connection is sent to another replica. A retry is always
// another connection to the egress proxy, never a direct one.
const EgressProxyAttempts = 3

// retryEgressProxy says whether a failed attempt to open a connection (or
// tunnel) to the egress proxy may be tried again: it failed before the
// egress proxy answered anything (refused, reset, closed, unreachable),
// so nothing of the request reached an upstream, and time is left.
func retryEgressProxy(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) || body.IsEOF(err)
}

// DialEgressProxy opens a connection to the egress proxy itself (TLS for
// https://, verified like any upstream), with the Dialer's Control,
// trying another connection when one fails before the proxy answered.
func (d *Dialer) DialEgressProxy(ctx context.Context) (net.Conn, error) {
	return d.retryEgress(ctx, d.dialEgressProxyOnce)
}

// retryEgress runs attempt up to EgressProxyAttempts times while its
// failures are retryable, counting each retry.
func (d *Dialer) retryEgress(ctx context.Context, attempt func(context.Context) (net.Conn, error)) (net.Conn, error) {
	for n := 1; ; n++ {
		nc, err := attempt(ctx)
		if err == nil || n == EgressProxyAttempts || !retryEgressProxy(ctx, err) {
			return nc, err
		}
		if d.cfg.OnEgressRetry != nil {
			d.cfg.OnEgressRetry()
		}
		d.cfg.Log.Debug("egress proxy connection failed; trying another", "attempt", n, "error", err)
	}
}

func (d *Dialer) dialEgressProxyOnce(ctx context.Context) (net.Conn, error) {
	ep := d.egress
	if ep == nil {
		return nil, ErrNoEgressProxy
	}
	// The operator named the egress proxy: an IP literal there is allowed
	// by the address policy like a rule's; the addresses of a name are not.
	nc, err := d.dial(addrpolicy.WithIntent(ctx, addrpolicy.IntentFor(ep.host, ep.host)), "tcp", ep.addr)
	if err != nil {
		return nil, ep.Fail(err)
	}
	if ep.tls {
		tc := tls.Client(nc, d.TLSConfig(ep.host, []string{"http/1.1"}))
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, ep.Fail(fmt.Errorf("tls handshake: %w", err))
		}
		nc = tc
	}
	return nc, nil
}

// ViaEgressProxy returns a CONNECT tunnel to host:port through the
// egress proxy, within ConnectTimeout; a CONNECT the proxy closes or
// resets before answering is tried on another connection. The caller
// layers TLS on top.
func (d *Dialer) ViaEgressProxy(ctx context.Context, host string, port uint16) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.ConnectTimeout)
	defer cancel()
	return d.retryEgress(ctx, func(ctx context.Context) (net.Conn, error) {
		nc, err := d.dialEgressProxyOnce(ctx)
		if err != nil {
			return nil, err
		}
		tc, err := d.egress.connect(ctx, nc, net.JoinHostPort(host, strconv.Itoa(int(port))))
		if err != nil {
			nc.Close()
			return nil, d.egress.Fail(err)
		}
		return tc, nil
	})
}

// connect asks the egress proxy on nc for a tunnel to target and reads its
// answer; ctx bounds the exchange.
func (ep *EgressProxy) connect(ctx context.Context, nc net.Conn, target string) (net.Conn, error) {
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
		return &PrereadConn{Conn: nc, r: br}, nil
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

// PrereadConn is a tunnel whose first bytes were read with the CONNECT
// answer.
type PrereadConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *PrereadConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// Buffered is the number of the tunnel's bytes read with the answer and
// not yet returned by Read.
func (c *PrereadConn) Buffered() int { return c.r.Buffered() }

// CloseWrite half-closes the tunnel (its connection, or closes it when it
// cannot half-close).
func (c *PrereadConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// WriteAuth writes the Proxy-Authorization field for the egress proxy; the
// client's own is never forwarded.
func (ep *EgressProxy) WriteAuth(bw *bufio.Writer) {
	if ep.auth != "" {
		bw.WriteString("Proxy-Authorization: " + ep.auth + "\r\n")
	}
}

// WriteTarget writes the absolute-form target of a plain HTTP request for
// the egress proxy: http://host:port/path, where host is the request's
// host (no port, no brackets) and port the original destination port the
// request was matched on (its Host field may lack it), or http://host/path
// for port 80; an origin-form path without a leading slash gets one, and
// OPTIONS * travels as OPTIONS http://host:port.
func WriteTarget(bw *bufio.Writer, host string, port uint16, path []byte) {
	bw.WriteString("http://")
	if strings.IndexByte(host, ':') >= 0 {
		bw.WriteString("[" + host + "]")
	} else {
		bw.WriteString(host)
	}
	// Port 80 is http's default: left out, so that the Host the proxy
	// forwards (from this authority, RFC 9112 §3.2.2) is the client's.
	if port != 80 {
		bw.WriteByte(':')
		bw.Write(strconv.AppendUint(bw.AvailableBuffer(), uint64(port), 10))
	}
	switch {
	case len(path) == 1 && path[0] == '*': // OPTIONS * travels as OPTIONS http://host:port
	case len(path) == 0 || path[0] != '/':
		bw.WriteByte('/')
		bw.Write(path)
	default:
		bw.Write(path)
	}
}
