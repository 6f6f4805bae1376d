// Package h1 reads and parses HTTP/1.x message heads — the request line or
// status line and the header fields — into a reused buffer, fields kept as
// offsets into it (no maps, no allocation per field), and checks a request
// before it is matched: one Host, one framing (Content-Length or chunked,
// never both), an authority that is host[:port], a target of a form egressd
// forwards. It has no networking: it reads from a bufio.Reader, and l7 moves
// the bodies (l7/body.go) and the bytes on the wire.
//
// Why a package of its own: the head is attacker-supplied input parsed
// before any decision, and a request two HTTP readers frame differently is
// how a smuggled request gets past it. Kept apart, the parser is fuzzed on
// its own against net/http's reading of the same bytes
// (FuzzRequestDifferential, FuzzResponseDifferential; their corpus in
// testdata/fuzz) and depends on nothing of the proxy.
//
// Errors: ErrHeadTooLarge, ErrBareLF, ErrMalformed and ErrVersion from
// ReadHead and Parse (l7 maps each to the status it sends),
// ErrMalformedResponse from ParseResponse (502).
//
// Files: head.go (Head, Span, Field: the reader, ReadHead, and the field
// parser that records framing and connection facts), request.go (Request:
// the request line, Parse; the pre-match checks, Check; the response's
// status line, ParseResponse; HasBody and Replayable), token.go (list
// elements, case-insensitive compares, decimal numbers, token characters:
// RFC 9110 5.6).
package h1
