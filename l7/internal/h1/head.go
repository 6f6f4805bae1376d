package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// A head is one HTTP/1.x message head (request or response) read into a
// reused buffer; fields refer to it by offsets, so parsing allocates nothing.
type Head struct {
	Buf    []byte
	Fields []Field

	// Request line, or status line for responses.
	Method, Target Span // request
	Status         int  // response
	Reason         Span // response: "NNN reason" as received (status code included)
	Minor          int  // HTTP/1.minor

	// What the fields say about framing and the connection.
	ContentLength  int64 // -1: none
	Chunked        bool  // Transfer-Encoding ends in chunked
	TeOther        bool  // Transfer-Encoding present but not (only) chunked
	TeCodings      bool  // exactly one Transfer-Encoding field: codings, then chunked last
	Te             Span  // the Transfer-Encoding field value
	TeFields       int   // number of Transfer-Encoding fields
	Hosts          int   // number of Host fields
	host           Span  // the Host field's value
	ConnClose      bool  // Connection: close
	connKeepAlive  bool  // Connection: keep-alive (HTTP/1.0)
	connUpgrade    bool  // Connection: upgrade
	Upgrade        Span  // Upgrade field value
	ExpectContinue bool  // Expect: 100-continue
	expectOther    bool  // an Expect field with another expectation (417)
	TeTrailers     bool  // TE names trailers
}

// Span is a half-open range of a head's buffer.
type Span struct{ Lo, Hi int32 }

func (s Span) empty() bool { return s.Hi <= s.Lo }

func (h *Head) Bytes(s Span) []byte { return h.Buf[s.Lo:s.Hi] }

// Field is one header field line; line covers "name: value" as received.
type Field struct {
	Name, Value Span
	Kind        FieldKind
}

// FieldKind says how the proxy treats a field when forwarding.
type FieldKind uint8

const (
	FieldOther FieldKind = iota // forwarded as is
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
	ErrHeadTooLarge = errors.New("message head too large")
	ErrBareLF       = errors.New("line not terminated by CRLF")
	ErrMalformed    = errors.New("malformed message head")
	ErrVersion      = errors.New("unsupported HTTP version")
)

// maxLeadingBlankLines before a request line are skipped (RFC 9112 2.2).
const maxLeadingBlankLines = 4

// Bounds on what one head may hold, so that a head within MaxHeaderBytes
// cannot make the Connection-token pass quadratic.
const (
	MaxFields     = 500 // more: errHeadTooLarge (431)
	MaxConnTokens = 32  // more names in Connection fields: errMalformed
)

// ReadHead reads a message head (up to and including the empty line) from br
// into h.buf, keeping it under max bytes. It returns io.EOF when br ends
// before the first byte.
func (h *Head) ReadHead(br *bufio.Reader, max int) error {
	h.Buf = h.Buf[:0]
	blanks := 0
	lineStart := 0
	for {
		frag, err := br.ReadSlice('\n')
		if len(h.Buf)+len(frag) > max {
			return ErrHeadTooLarge
		}
		h.Buf = append(h.Buf, frag...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF && len(h.Buf) > 0 {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		line := h.Buf[lineStart:]
		if len(line) < 2 || line[len(line)-2] != '\r' {
			return ErrBareLF
		}
		if len(line) == 2 {
			if lineStart == 0 {
				if blanks++; blanks > maxLeadingBlankLines {
					return ErrMalformed
				}
				h.Buf = h.Buf[:0]
				continue
			}
			return nil
		}
		lineStart = len(h.Buf)
	}
}

// nextLine returns the line starting at off (without CRLF) and the offset of
// the following line. readHead guaranteed CRLF endings.
func (h *Head) nextLine(off int) (Span, int) {
	if i := bytes.IndexByte(h.Buf[off:], '\n'); i > 0 {
		return Span{int32(off), int32(off + i - 1)}, off + i + 1
	}
	return Span{int32(off), int32(len(h.Buf))}, len(h.Buf)
}

func (h *Head) reset() {
	h.Fields = h.Fields[:0]
	*h = Head{Buf: h.Buf, Fields: h.Fields, ContentLength: -1}
}

// parseFields parses the field lines from off to the end of the head and
// derives the framing and connection facts.
func (h *Head) parseFields(off int) error {
	for {
		ln, next := h.nextLine(off)
		if ln.empty() {
			break
		}
		if len(h.Fields) == MaxFields {
			return ErrHeadTooLarge
		}
		f, err := h.ParseField(ln)
		if err != nil {
			return err
		}
		h.Fields = append(h.Fields, f)
		off = next
	}
	for i := range h.Fields {
		if err := h.noteField(&h.Fields[i]); err != nil {
			return err
		}
	}
	// Drop the fields that Connection names (they are hop-by-hop).
	named := 0
	for i := range h.Fields {
		f := &h.Fields[i]
		if f.Kind != fieldConnection {
			continue
		}
		for tok := range tokens(h.Bytes(f.Value)) {
			if named++; named > MaxConnTokens {
				return ErrMalformed
			}
			for j := range h.Fields {
				if g := &h.Fields[j]; g.Kind == FieldOther && equalFold(h.Bytes(g.Name), tok) {
					g.Kind = fieldDrop
				}
			}
		}
	}
	return nil
}

// ParseField splits one "name: value" line, validating both parts.
func (h *Head) ParseField(ln Span) (Field, error) {
	line := h.Bytes(ln)
	colon := -1
	for i, b := range line {
		if b == ':' {
			colon = i
			break
		}
		if !isTokenChar(b) {
			return Field{}, ErrMalformed // includes obs-fold and space before ':'
		}
	}
	if colon <= 0 {
		return Field{}, ErrMalformed
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
			return Field{}, ErrMalformed // CR, NUL and other controls
		}
	}
	return Field{
		Name:  Span{ln.Lo, ln.Lo + int32(colon)},
		Value: Span{ln.Lo + int32(lo), ln.Lo + int32(hi)},
		Kind:  classify(line[:colon]),
	}, nil
}

// classify names the fields the proxy treats specially.
func classify(name []byte) FieldKind {
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
	return FieldOther
}

// noteField records what a special field says about the message.
func (h *Head) noteField(f *Field) error {
	v := h.Bytes(f.Value)
	switch f.Kind {
	case fieldHost:
		h.Hosts++
		h.host = f.Value
	case fieldContentLength:
		for tok := range tokens(v) { // "5, 5" is one length said twice
			n, ok := parseDecimal(tok)
			if !ok || h.ContentLength >= 0 && n != h.ContentLength {
				return ErrMalformed
			}
			h.ContentLength = n
		}
		if h.ContentLength < 0 {
			return ErrMalformed
		}
	case fieldTransferEncoding:
		if len(TrimOWS(v)) > 0 && hasEmptyElement(v) {
			// ", chunked", "chunked,": a list RFC 9110 5.6.1 says to
			// read past, which net/http refuses; framing a body by a field
			// that peers read differently is how requests are smuggled and
			// responses cross, so it is refused here too.
			return ErrMalformed
		}
		h.TeFields++
		h.Te = f.Value
		last := false // the last coding so far is chunked
		if len(TrimOWS(v)) == 0 {
			h.TeOther = true // no coding: not only chunked, also beside a chunked field
		}
		for tok := range tokens(v) {
			if h.Chunked {
				h.TeOther = true // a coding after chunked
			}
			last = equalFold(tok, "chunked")
			if last {
				h.Chunked = true
			} else {
				h.TeOther = true
			}
		}
		if !h.Chunked {
			h.TeOther = true
		}
		h.TeCodings = h.TeOther && last && h.TeFields == 1
	case fieldConnection:
		for tok := range tokens(v) {
			switch {
			case equalFold(tok, "close"):
				h.ConnClose = true
			case equalFold(tok, "keep-alive"):
				h.connKeepAlive = true
			case equalFold(tok, "upgrade"):
				h.connUpgrade = true
			}
		}
	case fieldUpgrade:
		h.Upgrade = f.Value
	case fieldTE:
		for tok := range tokens(v) {
			if equalFold(tok, "trailers") {
				h.TeTrailers = true
			}
		}
	case fieldExpect:
		if equalFold(v, "100-continue") {
			h.ExpectContinue = true
		} else {
			h.expectOther = true
		}
	}
	return nil
}
