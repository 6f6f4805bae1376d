package l7

// Chaining through the egress proxy (Config.EgressProxy) for rules with
// useEgressProxy: the connections and tunnels are l7/internal/dialer's;
// here are the start-up check and the absolute-form target that plain
// HTTP requests carry to it (forward.go, relay.go call in here).

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/egressd/egressd/l7/internal/dialer"
	"github.com/egressd/egressd/rules"
)

// egressProxy is the parsed Config.EgressProxy.
type egressProxy = dialer.EgressProxy

// CheckEgressProxy is the start-up check of egressd run: with no egress
// proxy configured (egressProxy nil), every rule of set that demands one is
// an error naming them; with one, the URL must be usable.
func CheckEgressProxy(set *rules.Set, egressProxy *url.URL) error {
	if egressProxy != nil {
		_, err := dialer.ParseEgressProxy(egressProxy)
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

// dialEgressProxy opens a connection to the egress proxy itself, for a
// request in absolute form (forward.go).
func (p *Proxy) dialEgressProxy(ctx context.Context) (net.Conn, error) {
	return p.dialer.DialEgressProxy(ctx)
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

// errProxyAuth: the egress proxy answered a plain request with 407.
var errProxyAuth = errors.New("answered 407 Proxy Authentication Required: check the credentials in the egress proxy URL")
