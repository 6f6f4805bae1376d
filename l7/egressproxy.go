package l7

// Chaining through the egress proxy (Config.EgressProxy) for rules with
// useEgressProxy: the connections and tunnels are l7/internal/dialer's;
// here are the start-up check and the calls of forward.go and relay.go
// (the connection for absolute-form requests, their target).

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

// writeProxyTarget writes the current request's absolute-form target for
// the egress proxy (dialer.WriteTarget), on the original destination port
// it was matched on (relay.go).
func (s *h1conn) writeProxyTarget(bw *bufio.Writer) {
	r := &s.req
	dialer.WriteTarget(bw, hostOnly(string(r.Bytes(r.Authority))), s.entry.port, r.Bytes(r.Path))
}

// errProxyAuth: the egress proxy answered a plain request with 407.
var errProxyAuth = errors.New("answered 407 Proxy Authentication Required: check the credentials in the egress proxy URL")
