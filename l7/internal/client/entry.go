package client

import (
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/egressd/egressd/l7/internal/metrics"
	"github.com/egressd/egressd/rules"
)

// Scope is whose rules decide the requests of a connection: a Kubernetes
// namespace's (on top of the global ones), a cgroup's given its own rule
// files, or the global ones (l7.Config.Rules). l7 exports it as l7.Scope.
type Scope struct {
	// Rules decide the connection's requests, read again for each
	// request; nil: l7.Config.Rules.
	Rules interface{ Current() *rules.Set }
	// Namespace names the scope in the access log (namespace=) and in the
	// metrics' namespace label; "": the global rules. It must come from a
	// bounded set (namespaces, configured cgroups), not from the client.
	Namespace string
	// Pod is the pod's name in the access log (pod=); "": none.
	Pod string
}

// Protocol names in the access log and the "protocol" metric label.
const (
	ProtoHTTP1   = "http/1.1"
	ProtoHTTP10  = "http/1.0"
	ProtoH2C     = "h2c"
	ProtoGRPC    = "grpc"
	ProtoTLSPass = "tls-passthrough"
	ProtoConnect = "connect" // a gateway CONNECT tunnel
)

// Decisions, as logged and as the "decision" metric label.
const (
	DecisionAllow   = "allow"   // matched a rule and forwarded (whatever the upstream answered)
	DecisionDeny    = "deny"    // no rule allows the host and port: 403
	DecisionInvalid = "invalid" // refused before matching: malformed request
	// DecisionWouldDeny: no rule allows it, forwarded in audit mode.
	DecisionWouldDeny = "would-deny"
)

// Values of the X-Egressd header on responses the proxy makes itself.
const (
	MarkerDenied  = "denied"  // 403: no rule allows the request
	MarkerInvalid = "invalid" // 4xx/5xx: the request was refused before matching
	MarkerError   = "error"   // 502/504: the upstream failed
)

// Entry is one request's access-log record and metrics observation. Every
// protocol handler fills one per request (or stream) and hands it to the
// proxy's finish, which logs and counts it.
type Entry struct {
	Start    time.Time
	Client   netip.AddrPort
	Orig     netip.AddrPort
	Host     string // effective authority as requested ("" when unknown)
	Port     uint16 // original destination port, matched against the rules
	Protocol string // Proto*
	Upstream string // allowed requests: "http", "https" (TLS originated), "tls" (TLS passthrough), "tunnel" (gateway CONNECT, spliced) or "requests" (gateway CONNECT whose requests are decided one by one)
	Rule     string // matching rule name; "" when none
	Decision string // Decision*
	Status   int    // status sent to the client (0: none, connection dropped)
	// GRPCStatus is the grpc-status the client got (gRPC only; "" when
	// none came: the stream was reset or is not gRPC).
	GRPCStatus string
	BytesIn    int64  // request body bytes from the client
	BytesOut   int64  // response body bytes to the client
	Reason     string // why a request was refused or failed ("" for success)
	WouldDeny  bool   // audit mode: no rule allows it, forwarded
	// Scope: the connection's; nil: the global rules (gateway requests).
	Scope *Scope

	// Optional text forms of Client and Orig, cached per connection by
	// handlers that log many requests on one ("": formatted when logged).
	ClientText, OrigText string
	// Optional per-connection cache of the metrics of the previous request
	// (nil: looked up every time).
	Metrics *metrics.RequestCache
}

// Namespace is the name of e's scope ("": the global rules).
func (e *Entry) Namespace() string {
	if e.Scope == nil {
		return ""
	}
	return e.Scope.Namespace
}

// Pod is the pod of e's scope ("": none).
func (e *Entry) Pod() string {
	if e.Scope == nil {
		return ""
	}
	return e.Scope.Pod
}

// Splice is what allowed a spliced connection (TLS passthrough, a gateway
// CONNECT tunnel carrying TLS, a 101 upgrade), and its two ends: enough for
// l7.Proxy.Redecide to decide it again when the rules change and cut it.
type Splice struct {
	Protocol string   // access-log protocol of the connection
	Hosts    []string // every name that must still be allowed on Port (a tunnel: its target and the TLS server name)
	Port     uint16
	Rule     string // the rule that allowed it
	Client   net.Conn
	Up       net.Conn
	Cut      atomic.Pointer[string] // why egressd closed it; nil: it did not
}
