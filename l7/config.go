package l7

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"syscall"
	"time"

	"github.com/egressd/egressd/internal/metric"
	"github.com/egressd/egressd/l7/internal/client"
	"github.com/egressd/egressd/rules"
)

// OriginalDst recovers where an accepted connection was originally going.
type OriginalDst interface {
	// Lookup is given the accepted connection's remote (client) and local
	// addresses as the proxy sees them. ok=false: not redirected by us → close.
	Lookup(client, local netip.AddrPort) (orig netip.AddrPort, ok bool)
}

// OriginalDstCgroup is an OriginalDst that also tells the cgroup of the
// process that connected. Host processes all connect from loopback; with
// it, MaxConnsPerClient counts their connections per cgroup (a
// hostNetwork pod each) instead of all of them together.
type OriginalDstCgroup interface {
	OriginalDst
	LookupCgroup(client, local netip.AddrPort) (orig netip.AddrPort, cgroupID uint64, ok bool)
}

// Scope is whose rules decide the requests of a connection: a Kubernetes
// namespace's (on top of the global ones), a cgroup's given its own rule
// files, or the global ones (Config.Rules). Its fields:
//   - Rules decide the connection's requests, read again for each
//     request; nil: Config.Rules.
//   - Namespace names the scope in the access log (namespace=) and in the
//     metrics' namespace label; "": the global rules. It must come from a
//     bounded set (namespaces, configured cgroups), not from the client.
//   - Pod is the pod's name in the access log (pod=); "": none.
//
// It is defined in l7/internal/client, beside the connection that holds it.
type Scope = client.Scope

// Scoper chooses the Scope of each connection, once, right after its
// original destination was found, by the cgroup of the process that
// connected (0 when the OriginalDst does not tell it). It may block
// briefly (a pod the agent has not heard of yet); it must not fail: a
// connection it cannot place gets the global rules (a Scope with nil
// Rules), and it says so in its own log.
type Scoper interface {
	Scope(cgroupID uint64) Scope
}

// DialMode chooses the address an allowed request is sent to.
type DialMode int

const (
	// DialResolve resolves the matched host with Config.Resolver and dials
	// that: a forged Host cannot reach an address of the app's choosing.
	DialResolve DialMode = iota
	// DialOriginal dials the original destination IP the app connected to.
	DialOriginal
)

// ParseDialMode parses the --dial flag value: "resolve" or "original".
func ParseDialMode(s string) (DialMode, error) {
	switch s {
	case "resolve", "":
		return DialResolve, nil
	case "original":
		return DialOriginal, nil
	}
	return 0, fmt.Errorf("dial mode %q: want resolve or original", s)
}

func (m DialMode) String() string {
	if m == DialOriginal {
		return "original"
	}
	return "resolve"
}

// Defaults of the Config limits and timeouts (used where the field is zero).
const (
	DefaultMaxHeaderBytes    = 32 << 10
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultConnectTimeout    = 5 * time.Second
	DefaultResponseTimeout   = 60 * time.Second
	DefaultMaxIdlePerHost    = 64
	DefaultUpstreamIdle      = 30 * time.Second
	DefaultMaxConns          = 16384
	DefaultMaxConnsPerClient = 1024
	DefaultMaxIdleUpstream   = 1024
	DefaultMaxIdlePerClient  = 128
)

// Config configures a Proxy. Rules and OriginalDst are required; every other
// field has a documented default for its zero value.
type Config struct {
	Rules interface{ Current() *rules.Set } // required; a nil *Set denies everything
	// Audit forwards the requests the rules would deny (audit.go), logged
	// and counted as decision would-deny; false: enforce.
	Audit bool
	// Scopes, if not nil, gives each connection the rules of its scope
	// (its pod's namespace, its cgroup); nil: Rules decide everything.
	// Gateway connections always use Rules.
	Scopes      Scoper
	OriginalDst OriginalDst   // required by Serve; ServeGateway (gateway.go) does not use it
	DialMode    DialMode      // zero: DialResolve
	Resolver    *net.Resolver // nil: net.DefaultResolver; without a Dial of its own it is made to mark its sockets
	Mark        uint32        // SO_MARK on every upstream socket; 0: none
	// Control runs on every socket the proxy connects itself (upstream,
	// egress proxy, the resolver's unless it has its own Dial) before
	// connect, after Mark; an error fails the dial. egressd's agent
	// registers its own sockets with the BPF programs here. nil: none.
	Control func(network, address string, c syscall.RawConn) error
	// Dial opens upstream TCP connections. nil: a net.Dialer with Resolver,
	// Mark and ConnectTimeout whose ControlContext applies the upstream
	// address policy (l7/internal/dialer) before each connect. It receives
	// "host.:port" (an absolute name) or "ip:port". A Dial of the
	// embedder's is checked after it connects: a refused address is closed
	// before a byte is sent.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// AllowUpstream lists the ranges the upstream address policy lets
	// through although they are loopback, link-local, multicast,
	// unspecified or the node's own (--allow-upstream).
	AllowUpstream []netip.Prefix
	RootCAs       *x509.CertPool // trusted for TLS origination in addition to the system roots; nil: system roots only
	EgressProxy   *url.URL       // for rules with useEgressProxy; nil: such requests fail with 502, never go direct
	Logger        *slog.Logger   // errors, and the access log unless AccessLog is set; nil: discard
	// AccessLog receives one Info record per request ("request"); nil: Logger.
	// A logger whose handler is disabled at Info (slog.DiscardHandler) turns
	// the access log off at no cost; an *AccessLog handler (NewAccessLog)
	// encodes lines without slog and saves the write(2) per request.
	AccessLog *slog.Logger
	Metrics   *metric.Registry // nil: metrics are kept but not registered

	MaxHeaderBytes    int           // request/response head size limit (431 / 502); 0: DefaultMaxHeaderBytes
	ReadHeaderTimeout time.Duration // time to read a request head once it started (slowloris); 0: DefaultReadHeaderTimeout
	IdleTimeout       time.Duration // keep-alive wait for the next request, and longest stall inside a request or response body (long polls, SSE); 0: DefaultIdleTimeout
	ConnectTimeout    time.Duration // upstream TCP connect plus TLS handshake; 0: DefaultConnectTimeout
	ResponseTimeout   time.Duration // wait for the upstream response head after the request (body included) was sent; not gRPC (grpc-timeout); 0: DefaultResponseTimeout
	MaxIdlePerHost    int           // idle upstream connections kept per (protocol, host, port, target); 0: DefaultMaxIdlePerHost
	UpstreamIdle      time.Duration // how long an idle upstream connection is kept; 0: DefaultUpstreamIdle
	// MaxConns and MaxConnsPerClient bound the client connections open at
	// once, in all and from one client (source address); a connection over
	// either is shed at accept (limit.go). 0: the default; negative: none.
	MaxConns          int // 0: DefaultMaxConns
	MaxConnsPerClient int // 0: DefaultMaxConnsPerClient
	// MaxStreamsPerClient bounds the h2c streams open at once from one
	// client, over all its connections (streamlimit.go); one more is
	// answered 503. 0: DefaultMaxStreamsPerClient; negative: none.
	MaxStreamsPerClient int
	MaxIdleUpstream     int // idle upstream HTTP/1.x connections kept in all; 0: DefaultMaxIdleUpstream
	// MaxIdlePerClient bounds the idle upstream HTTP/1.x connections that the
	// requests of one client address may leave pooled (so one client naming
	// thousands of hosts makes egressd hold at most this many sockets for
	// it); 0: DefaultMaxIdlePerClient. Over a bound the oldest is closed.
	MaxIdlePerClient int
	// MaxSpliceLifetime closes a spliced connection (TLS passthrough,
	// gateway CONNECT tunnel carrying TLS, 101 upgrade) this long after its
	// splice began (redecide.go); 0: never. A rule's removal ends what it
	// allowed anyway (Redecide); this bounds how long a decision, and the
	// DNS answer it dialled, may be used.
	MaxSpliceLifetime time.Duration
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}
