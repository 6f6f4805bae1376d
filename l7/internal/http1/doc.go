// Package http1 serves the HTTP/1.x requests of the proxy's client
// connections — redirected ones, the gateway's, and those inside its
// CONNECT tunnels — one after the other on a connection, each decided on
// its own through Host (the proxy: rules, audit mode, scopes), forwarded
// over pooled upstream connections (TLS originated on HTTPS ports, through
// the egress proxy when a rule demands it) or answered by egressd itself.
//
// Why a package of its own: it is the largest protocol handler, and the
// one with the most state per connection; behind Host it depends on
// nothing of the proxy but the shared connection record
// (l7/internal/client), so it reads on its own.
//
// It is built for low cost per request: one goroutine per client
// connection, pooled bufio buffers (none held by an idle connection), a
// head parser that records fields as offsets into a reused buffer
// (l7/internal/h1: no maps, no per-field allocation), pooled upstream
// connections (l7/internal/pool), bodies streamed with a flush before
// every read that would block (l7/internal/body), deadlines moved only when
// they must (l7/internal/body/deadline.go: the timeouts fire up to 1/16 of
// their length late, never early; a request head already buffered whole
// gets no ReadHeaderTimeout deadline). l7's BenchmarkProxyAllowedKeepAlive
// measures it.
//
// Files:
//   - server.go: Server, Config, Host;
//   - serve.go: the per-connection request loop, the refusals before a
//     decision, deny;
//   - forward.go: an allowed request to the upstream, on a pooled or new
//     connection, retried once when a reused one was stale;
//   - exchange.go and relay.go: the request head sent, the response heads
//     (1xx relayed) and body back, reframed where the client needs it; the
//     heads egressd writes;
//   - upload.go: the request body sent from its own goroutine while the
//     response is read (full duplex);
//   - watch.go: a client leaving mid-exchange closes its upstream;
//   - headwrite.go: a request head written inside the wait for its answer,
//     saving a read(2);
//   - upgrade.go: 101 Switching Protocols, then a splice;
//   - respond.go: egressd's own answers (403, 4xx, 502/504);
//   - upconn.go and probe.go: upstream connections, kept idle by
//     l7/internal/pool, and their liveness check on reuse, which looks at
//     the socket through l7/internal/probe;
//   - gateway.go: the gateway's requests — CONNECT tunnels (spliced TLS,
//     or HTTP/1.x and h2c whose requests are decided one by one) and
//     absolute form; the forms are l7/internal/gateway's.
package http1
