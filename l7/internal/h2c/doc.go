// Package h2c is l7's HTTP/2 front end and forwarder: it serves the
// HTTP/2 prior-knowledge (h2c) connections the proxy sniffed, including
// gRPC, and sends each allowed stream upstream: h2c, HTTP/2 over TLS
// (ALPN h2), or HTTP/1.1 over TLS for an HTTPS upstream that chose it
// (not gRPC). Bodies stream both ways with a flush after every write,
// trailers follow, flow control is x/net's; a stream's response timeout
// and body stalls are bounded (not gRPC's, which carries its own deadline);
// egressd's own answers are text, or for gRPC trailers-only responses with
// the matching status.
//
// What it needs of the proxy is behind Upstream (dial a stream's upstream
// with the proxy's dialer, its TLS config, the one mapping of upstream
// errors to statuses); it does not decide, admit, count or log: l7's
// stream handler does that for every stream, given to ServeConn, and reads
// what the client got from a Record.
//
// Why a package of its own: HTTP/2 is a second proxy beside the HTTP/1.x
// fast path, built on x/net's server and transports rather than on the
// proxy's own parser and pool; kept apart, its memory bounds (64 KiB
// windows, 16 KiB frames both ways), its upstream pool keys and its gRPC
// mapping read as one piece, and the HTTP/1.x files do not depend on it.
//
// Files: server.go (Server, Config: the shared HTTP/2 server settings,
// ServeConn with its connection gate, GOAWAY, idle close), upstream.go
// (Target and its pool key, the transports and their dials, the HTTP/1.1
// fallback), forward.go (Forward: one stream upstream and its response
// back, timeouts, failures), grpc.go (gRPC detection, status codes,
// WriteLocal), settings.go (the upstream's SETTINGS_MAX_FRAME_SIZE
// lowered).
package h2c
