package l7

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// A head is one HTTP/1.x message head (request or response) read into a
// reused buffer; fields refer to it by offsets, so parsing allocates nothing.
type head struct {
	buf    []byte
	fields []field

	// Request line, or status line for responses.
	method, target span // request
	status         int  // response
	reason         span // response: "NNN reason" as received (status code included)
	minor          int  // HTTP/1.minor

	// What the fields say about framing and the connection.
	contentLength  int64 // -1: none
	chunked        bool  // Transfer-Encoding ends in chunked
	teOther        bool  // Transfer-Encoding present but not (only) chunked
	teCodings      bool  // exactly one Transfer-Encoding field: codings, then chunked last
	te             span  // the Transfer-Encoding field value
	teFields       int   // number of Transfer-Encoding fields
	hosts          int   // number of Host fields
	host           span  // the Host field's value
	connClose      bool  // Connection: close
	connKeepAlive  bool  // Connection: keep-alive (HTTP/1.0)
	connUpgrade    bool  // Connection: upgrade
	upgrade        span  // Upgrade field value
	expectContinue bool  // Expect: 100-continue
	expectOther    bool  // an Expect field with another expectation (417)
	teTrailers     bool  // TE names trailers
}

// span is a half-open range of a head's buffer.
type span struct{ lo, hi int32 }

func (s span) empty() bool { return s.hi <= s.lo }

func (h *head) bytes(s span) []byte { return h.buf[s.lo:s.hi] }

// field is one header field line; line covers "name: value" as received.
type field struct {
	name, value span
	kind        fieldKind
}

// fieldKind says how the proxy treats a field when forwarding.
type fieldKind uint8

const (
	fieldOther fieldKind = iota // forwarded as is
	fieldDrop                   // hop-by-hop or named by Connection: never forwarded
	fieldHost
	fieldContentLength
	fieldTransferEncoding
	fieldConnection
	fieldUpgrade
	fieldTE
	fieldExpect
)

// Errors of the head reader and parser. Each maps to the status sent to the
// client (see headStatus).
var (
	errHeadTooLarge = errors.New("message head too large")
	errBareLF       = errors.New("line not terminated by CRLF")
	errMalformed    = errors.New("malformed message head")
	errVersion      = errors.New("unsupported HTTP version")
)

// maxLeadingBlankLines before a request line are skipped (RFC 9112 2.2).
const maxLeadingBlankLines = 4

// Bounds on what one head may hold, so that a head within MaxHeaderBytes
// cannot make the Connection-token pass quadratic.
const (
	maxFields     = 500 // more: errHeadTooLarge (431)
	maxConnTokens = 32  // more names in Connection fields: errMalformed
)

// readHead reads a message head (up to and including the empty line) from br
// into h.buf, keeping it under max bytes. It returns io.EOF when br ends
// before the first byte.
func (h *head) readHead(br *bufio.Reader, max int) error {
	h.buf = h.buf[:0]
	blanks := 0
	lineStart := 0
	for {
		frag, err := br.ReadSlice('\n')
		if len(h.buf)+len(frag) > max {
			return errHeadTooLarge
		}
		h.buf = append(h.buf, frag...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF && len(h.buf) > 0 {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		line := h.buf[lineStart:]
		if len(line) < 2 || line[len(line)-2] != '\r' {
			return errBareLF
		}
		if len(line) == 2 {
			if lineStart == 0 {
				if blanks++; blanks > maxLeadingBlankLines {
					return errMalformed
				}
				h.buf = h.buf[:0]
				continue
			}
			return nil
		}
		lineStart = len(h.buf)
	}
}

// nextLine returns the line starting at off (without CRLF) and the offset of
// the following line. readHead guaranteed CRLF endings.
func (h *head) nextLine(off int) (span, int) {
	if i := bytes.IndexByte(h.buf[off:], '\n'); i > 0 {
		return span{int32(off), int32(off + i - 1)}, off + i + 1
	}
	return span{int32(off), int32(len(h.buf))}, len(h.buf)
}

func (h *head) reset() {
	h.fields = h.fields[:0]
	*h = head{buf: h.buf, fields: h.fields, contentLength: -1}
}

// parseFields parses the field lines from off to the end of the head and
// derives the framing and connection facts.
func (h *head) parseFields(off int) error {
	for {
		ln, next := h.nextLine(off)
		if ln.empty() {
			break
		}
		if len(h.fields) == maxFields {
			return errHeadTooLarge
		}
		f, err := h.parseField(ln)
		if err != nil {
			return err
		}
		h.fields = append(h.fields, f)
		off = next
	}
	for i := range h.fields {
		if err := h.noteField(&h.fields[i]); err != nil {
			return err
		}
	}
	// Drop the fields that Connection names (they are hop-by-hop).
	named := 0
	for i := range h.fields {
		f := &h.fields[i]
		if f.kind != fieldConnection {
			continue
		}
		for tok := range tokens(h.bytes(f.value)) {
			if named++; named > maxConnTokens {
				return errMalformed
			}
			for j := range h.fields {
				if g := &h.fields[j]; g.kind == fieldOther && equalFold(h.bytes(g.name), tok) {
					g.kind = fieldDrop
				}
			}
		}
	}
	return nil
}

// parseField splits one "name: value" line, validating both parts.
func (h *head) parseField(ln span) (field, error) {
	line := h.bytes(ln)
	colon := -1
	for i, b := range line {
		if b == ':' {
			colon = i
			break
		}
		if !isTokenChar(b) {
			return field{}, errMalformed // includes obs-fold and space before ':'
		}
	}
	if colon <= 0 {
		return field{}, errMalformed
	}
	lo, hi := colon+1, len(line)
	for lo < hi && (line[lo] == ' ' || line[lo] == '\t') {
		lo++
	}
	for hi > lo && (line[hi-1] == ' ' || line[hi-1] == '\t') {
		hi--
	}
	for _, b := range line[lo:hi] {
		if b < ' ' && b != '\t' || b == 0x7f {
			return field{}, errMalformed // CR, NUL and other controls
		}
	}
	return field{
		name:  span{ln.lo, ln.lo + int32(colon)},
		value: span{ln.lo + int32(lo), ln.lo + int32(hi)},
		kind:  classify(line[:colon]),
	}, nil
}

// classify names the fields the proxy treats specially.
func classify(name []byte) fieldKind {
	switch len(name) {
	case 2:
		if equalFold(name, "te") {
			return fieldTE
		}
	case 4:
		if equalFold(name, "host") {
			return fieldHost
		}
	case 6:
		if equalFold(name, "expect") {
			return fieldExpect
		}
	case 7:
		if equalFold(name, "upgrade") {
			return fieldUpgrade
		}
	case 10:
		if equalFold(name, "connection") {
			return fieldConnection
		}
		if equalFold(name, "keep-alive") {
			return fieldDrop
		}
	case 14:
		if equalFold(name, "content-length") {
			return fieldContentLength
		}
	case 16:
		if equalFold(name, "proxy-connection") {
			return fieldDrop
		}
	case 17:
		if equalFold(name, "transfer-encoding") {
			return fieldTransferEncoding
		}
	case 18:
		if equalFold(name, "proxy-authenticate") {
			return fieldDrop
		}
	case 19:
		if equalFold(name, "proxy-authorization") {
			return fieldDrop
		}
	}
	return fieldOther
}

// noteField records what a special field says about the message.
func (h *head) noteField(f *field) error {
	v := h.bytes(f.value)
	switch f.kind {
	case fieldHost:
		h.hosts++
		h.host = f.value
	case fieldContentLength:
		for tok := range tokens(v) { // "5, 5" is one length said twice
			n, ok := parseDecimal(tok)
			if !ok || h.contentLength >= 0 && n != h.contentLength {
				return errMalformed
			}
			h.contentLength = n
		}
		if h.contentLength < 0 {
			return errMalformed
		}
	case fieldTransferEncoding:
		h.teFields++
		h.te = f.value
		last := false // the last coding so far is chunked
		for tok := range tokens(v) {
			if h.chunked {
				h.teOther = true // a coding after chunked
			}
			last = equalFold(tok, "chunked")
			if last {
				h.chunked = true
			} else {
				h.teOther = true
			}
		}
		if !h.chunked {
			h.teOther = true
		}
		h.teCodings = h.teOther && last && h.teFields == 1
	case fieldConnection:
		for tok := range tokens(v) {
			switch {
			case equalFold(tok, "close"):
				h.connClose = true
			case equalFold(tok, "keep-alive"):
				h.connKeepAlive = true
			case equalFold(tok, "upgrade"):
				h.connUpgrade = true
			}
		}
	case fieldUpgrade:
		h.upgrade = f.value
	case fieldTE:
		for tok := range tokens(v) {
			if equalFold(tok, "trailers") {
				h.teTrailers = true
			}
		}
	case fieldExpect:
		if equalFold(v, "100-continue") {
			h.expectContinue = true
		} else {
			h.expectOther = true
		}
	}
	return nil
}
