// Package client holds what every protocol handler of the proxy shares
// about an accepted client connection, so that the handlers (l7's h2c and
// passthrough, l7/internal/http1) can live in packages of their own:
//
//   - conn.go: Conn, the connection — its addresses, buffered reader and
//     writer (pooled, dropped while idle), deadlines, scope, the state
//     Shutdown reads (active, idle, closed), the upstream connection of the
//     exchange in flight for a forced close, and the lingering close after
//     an early answer;
//   - sniff.go: Sniff, what the first bytes say (TLS, h2c, else HTTP/1.x);
//   - entry.go: Entry, one request's access-log record and metrics
//     observation (finished by l7's finish), the decision, protocol and
//     marker names, Scope (exported as l7.Scope), and Splice, what allowed
//     a spliced connection, for l7.Proxy.Redecide.
//
// It decides nothing and dials nothing.
package client
