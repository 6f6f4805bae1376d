// Package l7 is egressd's proxy: it accepts the connections that the BPF
// connect hooks redirected to it, recovers each one's original destination,
// sniffs the protocol, decides every request against the egress rules by its
// effective authority (Host, absolute-form URI or :authority) and the original
// destination port, and then forwards it (originating TLS on HTTPS ports) or
// answers 403.
//
// Lifecycle: New validates a Config and registers the metrics; Serve runs an
// accept loop per listener (IPv4 and IPv6 listeners may share one Proxy);
// Shutdown stops accepting, lets requests in flight finish (HTTP/1.x
// responses then say "Connection: close", h2c connections get GOAWAY), closes
// client connections still idle after a short grace and the idle upstream
// connections, and makes every Serve return ErrProxyClosed; at its context's
// end it cuts what remains, client and upstream sides. A listening socket
// shared with another process (an agent hand-over) keeps serving there: a
// connection this Proxy accepted is served to its end, and no keep-alive
// client loses a request to the close of its idle connection.
//
// Traps:
//   - A connection whose original destination is unknown is closed at once:
//     the proxy must never become an open proxy.
//   - A connection over MaxConns, over MaxConnsPerClient (source address;
//     host processes by cgroup), or from a client with 16 or more open
//     while resident memory is above 90 % of the runtime's memory limit is
//     shed at accept (limit.go): reset unread, counted by reason, logged at
//     most every 5 s per reason. Accept errors of exhausted resources (EMFILE,
//     ENFILE, ENOBUFS, ENOMEM) pause Serve, never end it.
//   - One client holds at most MaxStreamsPerClient h2c streams at once, over
//     all its connections (streamlimit.go); one more is answered 503.
//   - The first request head (TLS ClientHello, h2c preface) must arrive
//     within ReadHeaderTimeout of accept, not of its first byte; until its
//     first byte a connection holds no read buffer.
//   - Spliced connections (TLS passthrough, CONNECT tunnels, 101 upgrades)
//     pass half-closes on; once one direction has ended, the other is cut
//     after IdleTimeout without a byte.
//   - Every HTTP/1.x request on a keep-alive connection is decided on its own;
//     the previous request's decision is never reused.
//   - Requests with ambiguous framing (no or several Host headers, conflicting
//     Content-Length, Content-Length with Transfer-Encoding, a
//     Transfer-Encoding list with an empty element, bare LF, invalid chunks)
//     are refused with 400 and the connection is closed.
//   - Upstream sockets carry Config.Mark so that the BPF programs let them go
//     out instead of redirecting them back to the proxy.
//   - A Proxy's Metrics registerer receives its collectors once; use one
//     registry per Proxy. Labels name rules, never requested hosts.
//   - Client-supplied forwarding headers (Forwarded, X-Forwarded-*) are never
//     used for a decision and are passed on untouched; hop-by-hop fields, the
//     fields Connection names, and Proxy-Authorization never reach an origin.
//   - The access-log line and metrics of a request are recorded before the
//     last bytes of its response are flushed. With an AccessLog handler
//     (accesslogbuf.go) the line is then in its buffer and reaches the
//     writer up to FlushInterval later; Close it after Shutdown, before exit.
//
// The HTTP/1.x path (l7/internal/http1) is built for low cost per
// request; BenchmarkProxyAllowedKeepAlive measures it.
//
// Files, by concern (the parts that stand alone are packages under
// l7/internal, each saying why in its doc):
//   - the Proxy: proxy.go (Proxy, New, Serve, Shutdown), config.go (Config
//     and its defaults, OriginalDst, Scope, DialMode), metrics.go (the
//     collectors, l7/internal/metrics);
//   - accept: conn.go (a connection's original destination, scope and
//     protocol; the connection itself and the sniffing are
//     l7/internal/client's), limit.go (admission at accept through
//     l7/internal/limit, which counts; temporary accept errors);
//   - HTTP/1.x: http1.go builds l7/internal/http1's server, which serves
//     the requests of a connection (and the gateway's), each decided here
//     through its Host interface;
//   - deciding: dial.go (the decision against the rules, MarkControl and
//     ChainControl, upstream errors counted and logged; upstreams are
//     dialed by l7/internal/dialer under the address policy, chained
//     through the egress proxy, with TLS origination), audit.go (audit
//     mode: would-deny requests forwarded), redecide.go (spliced
//     connections decided again when the rules change, MaxSpliceLifetime);
//   - HTTP/2: h2c.go admits, decides and logs each h2c or gRPC stream
//     (streamlimit.go: the per-client stream bound); the HTTP/2 front end
//     and forwarder are l7/internal/h2c (64 KiB flow-control windows, 16 KiB
//     frames, the upstream pool keys, gRPC statuses);
//   - TLS passthrough: passthrough.go (the ClientHello is read by
//     l7/internal/sni; spliced connections, here and in tunnels and
//     upgrades, are joined by l7/internal/bridge);
//   - chaining and the gateway: egressproxy.go (the start-up check of
//     rules with useEgressProxy; never a direct fallback), gateway.go
//     (ServeGateway, the explicit proxy of `egressd gateway`: CONNECT and
//     absolute form, decided against the same rules; its request flow is
//     l7/internal/http1's, the forms taken and the port each targets
//     l7/internal/gateway's);
//   - logs: accesslog.go (the access-log record, client.Entry, logged
//     through slog or l7/internal/accesslog's batched encoder, and
//     observed in the request metrics), accesslogbuf.go (that handler's
//     public names).
package l7
