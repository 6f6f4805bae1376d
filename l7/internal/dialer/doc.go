// Package dialer is how l7 reaches an upstream: the address an allowed
// request is sent to (the matched name resolved as an absolute name, or
// the original destination checked against that name's addresses), the
// upstream address policy (l7/internal/addrpolicy) applied before every
// connect (or, for a Dial of the embedder's, right after it), chaining
// through the egress proxy (a CONNECT tunnel, or a connection to it for
// absolute-form requests, tried again on another connection while nothing
// was answered), and the client TLS configuration of TLS origination
// (verified against the system roots and the configured CAs, never
// skipped). Protocol handlers layer TLS and HTTP on the connections it
// returns; deciding and logging stay with the proxy, which counts and
// answers the failures as Failure classifies them.
//
// Why a package of its own: everything egressd does on a tenant's behalf
// towards the network passes here, and the security model's "never dials
// an address the pod itself could not reach" is kept in this one place,
// which depends on nothing of the proxy's connections or protocols.
//
// Files: dialer.go (Config, Dialer, New: the policy-checked dial, the
// dial address of each mode, the resolver whose sockets are marked),
// egressproxy.go (EgressProxy: its URL, CONNECT tunnels, retries,
// PrereadConn, EgressProxyError, WriteTarget: the absolute-form target a
// plain request carries to it), tls.go (TLSConfig and the verification
// of the upstream's certificate), failure.go (Failure: what an error met
// dialing or talking to an upstream becomes for the client, the status,
// the egressd_upstream_errors_total kind and the reason, in one place).
package dialer
