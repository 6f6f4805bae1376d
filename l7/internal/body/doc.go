// Package body moves HTTP/1.x message bodies between two connections —
// Content-Length, chunked (validated, re-framed or passed through, trailers
// bounded) and until-close — with a flush before every read that would
// block, deadlines on both sides, a byte count and a limit; bulk goes socket
// to socket with splice(2) (internal/zerocopy) once the buffers are empty.
// It also holds the coarse connection deadlines (Deadline) that the HTTP/1.x
// path of l7 sets on every read and write.
//
// Why a package of its own: framing a body wrongly is how one request's
// bytes become the next request, so its reading of chunks and lengths is
// kept in one place below l7's request loop, next to the head parser it
// relies on (l7/internal/h1), and depends on nothing of the proxy's
// decisions. The Pump's fields are set by l7 (l7/http1.go, exchange.go,
// upload.go) for each body.
//
// Files: body.go (Pump: CopyN, CopyChunked, CopyUntilEOF, RequestBody;
// chunk sizes and trailers), direct.go (the bulk path around the buffers:
// splice between plain TCP sockets, large reads and writes otherwise),
// deadline.go (Deadline:
// a read or write deadline moved only when it must, up to 1/16 of the
// timeout late, never early).
package body
