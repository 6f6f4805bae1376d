package l7

// The gateway: egressd as the dedicated egress proxy (`egressd gateway`).
// Clients (egressd agents with --egress-proxy, or anything configured with
// an explicit HTTP proxy) send CONNECT host:port or absolute-form requests;
// the host and port they name are decided against the same rules as the
// sidecar path, logged and counted alike, and so is every request inside a
// CONNECT tunnel. Everything else is refused: the gateway is never an open
// proxy. Which request forms it takes and the port each targets are
// l7/internal/gateway's; here is the request flow on the connection.

import (
	"errors"
	"net"

	"github.com/egressd/egressd/l7/internal/client"
	"github.com/egressd/egressd/rules"
)

// ServeGateway serves ln as an explicit HTTP proxy until Shutdown (then it
// returns ErrProxyClosed) or until ln fails:
//   - CONNECT host:port: allowed when a rule matches host on port; then the
//     tunnel is served like a connection redirected to port: a TLS
//     ClientHello must name (SNI) an allowed host too and is spliced; h2c
//     and HTTP/1.x requests are each decided on their own authority
//     (gatewayConnect).
//   - absolute-form requests (GET http://host[:port]/path): host and port
//     (default: the scheme's) are decided per request and forwarded like
//     the sidecar path (TLS originated on ports the rule marks HTTPS).
//   - anything else: origin-form requests, and CONNECT or absolute form to a
//     host or port no rule allows, get 403; malformed requests 400.
//
// In the access log, orig_dst is the target asked for (host:port, the
// scheme's port when the absolute form names none), or the gateway's own
// address for a request that names no usable target.
//
// Proxy-Authorization is consumed, never forwarded (the gateway does not
// check it). Rules with useEgressProxy are served directly: the gateway is
// the egress proxy, unless Config.EgressProxy chains it to another one.
// Config.OriginalDst is not used; DialMode must be DialResolve. ln may be a
// TLS listener (tls.NewListener): agents then use an https:// egress proxy
// URL, and the hop to the gateway is encrypted too.
func (p *Proxy) ServeGateway(ln net.Listener) error {
	if p.cfg.DialMode != DialResolve {
		return errors.New("l7: gateway: DialMode must be DialResolve: an explicit proxy has no original destination")
	}
	return p.serve(ln, true)
}

// serveGateway serves one gateway client connection (HTTP/1.x only);
// true: handed to another goroutine (l7/internal/http1's Serve).
func (p *Proxy) serveGateway(c *client.Conn) bool {
	return c.AwaitFirstBytes(p.cfg.ReadHeaderTimeout) && p.h1.Serve(c)
}

// decideConn is decide for a request on c. On a gateway connection (and in
// its tunnels) a rule's useEgressProxy is served directly: the gateway is
// the egress proxy, unless Config.EgressProxy chains it to another one.
func (p *Proxy) decideConn(c *client.Conn, e *client.Entry, host string, port uint16) (rules.Match, bool) {
	m, ok := p.decide(e, host, port)
	if ok && (c.Gateway || c.Tunnel) && p.egress == nil {
		m.UseEgressProxy = false
	}
	return m, ok
}
