package h1

// Request and response lines, and the request checks done before matching.

import (
	"bytes"
	"errors"
)

// Parsed request facts beyond head: where the request is going.
type Request struct {
	Head
	Authority Span // effective authority: absolute-form URI host over Host
	Path      Span // target to send upstream (origin-form); empty: "/"
	Absolute  bool // the target was in absolute form
}

// Parse parses a request head read by readHead.
func (r *Request) Parse() error {
	r.reset()
	r.Authority, r.Path, r.Absolute = Span{}, Span{}, false
	ln, next := r.nextLine(0)
	line := r.Bytes(ln)
	sp1 := indexSP(line, 0)
	if sp1 <= 0 {
		return ErrMalformed
	}
	sp2 := indexSP(line, sp1+1)
	if sp2 <= sp1+1 {
		return ErrMalformed
	}
	for _, b := range line[:sp1] {
		if !isTokenChar(b) {
			return ErrMalformed
		}
	}
	for _, b := range line[sp1+1 : sp2] {
		if b <= ' ' || b == 0x7f {
			return ErrMalformed
		}
	}
	r.Method = Span{ln.Lo, ln.Lo + int32(sp1)}
	r.Target = Span{ln.Lo + int32(sp1+1), ln.Lo + int32(sp2)}
	minor, err := parseVersion(line[sp2+1:])
	if err != nil {
		return err
	}
	r.Minor = minor
	return r.parseFields(next)
}

func indexSP(b []byte, from int) int {
	for i := from; i < len(b); i++ {
		if b[i] == ' ' {
			return i
		}
	}
	return -1
}

// parseVersion accepts HTTP/1.0 and HTTP/1.1; another well-formed version is
// errVersion (505).
func parseVersion(v []byte) (int, error) {
	if len(v) != 8 || string(v[:5]) != "HTTP/" || v[6] != '.' ||
		v[5] < '0' || v[5] > '9' || v[7] < '0' || v[7] > '9' {
		return 0, ErrMalformed
	}
	if v[5] != '1' || v[7] > '1' {
		return 0, ErrVersion
	}
	return int(v[7] - '0'), nil
}

// Check enforces the framing and authority rules that must hold before a
// request is matched. It returns 0 or the status and reason of the refusal;
// every refusal closes the connection.
func (r *Request) Check() (int, string) {
	switch {
	case r.Hosts > 1:
		return 400, "several Host header fields"
	case r.Hosts == 0 && r.Minor == 1:
		return 400, "no Host header field"
	case (r.Chunked || r.TeOther) && r.ContentLength >= 0:
		return 400, "both Content-Length and Transfer-Encoding"
	case (r.Chunked || r.TeOther) && r.Minor == 0:
		return 400, "Transfer-Encoding in an HTTP/1.0 request"
	case r.TeOther:
		return 501, "unsupported Transfer-Encoding (only chunked is)"
	case r.expectOther && r.Minor == 1: // HTTP/1.0 requests' Expect is ignored (RFC 9110 10.1.1)
		return 417, "unsupported expectation (only 100-continue is)"
	}
	if r.Hosts == 1 && !ValidAuthority(r.Bytes(r.host), r.Minor == 1) {
		return 400, "invalid Host header field"
	}
	t := r.Bytes(r.Target)
	method := r.Bytes(r.Method)
	switch {
	case string(method) == "CONNECT":
		return 405, "CONNECT is not allowed here: connect to the destination directly"
	case t[0] == '/':
		r.Path = r.Target
		r.Authority = r.host
	case len(t) == 1 && t[0] == '*' && string(method) == "OPTIONS":
		r.Path = r.Target
		r.Authority = r.host
	case HasPrefixFold(t, "http://") || HasPrefixFold(t, "https://"):
		return r.absoluteForm()
	default:
		return 400, "invalid request target"
	}
	if r.Authority.empty() {
		return 400, "no authority: the request needs a Host header field"
	}
	if !validEscapes(r.Bytes(r.Path)) {
		return 400, "invalid percent-encoding in the request target"
	}
	return 0, ""
}

// validEscapes reports whether every '%' of a target's path (before any
// '?') starts a %XX escape. net/http's server (url.ParseRequestURI)
// refuses the request otherwise; egressd forwards the path as received, so
// it refuses it too rather than pass upstream what a Go upstream would not
// take and another might decode its own way.
func validEscapes(target []byte) bool {
	if q := bytes.IndexByte(target, '?'); q >= 0 {
		target = target[:q]
	}
	for i := 0; i < len(target); i++ {
		if target[i] == '%' {
			if i+2 >= len(target) || !IsHex(target[i+1]) || !IsHex(target[i+2]) {
				return false
			}
			i += 2
		}
	}
	return true
}

// absoluteForm takes the authority from an absolute-form target: it wins
// over Host (RFC 9112 3.2.2), and it is what the upstream will be told.
func (r *Request) absoluteForm() (int, string) {
	t := r.Bytes(r.Target)
	start := 7 // "http://"
	if t[4] == 's' || t[4] == 'S' {
		start = 8
	}
	end := start
	for end < len(t) && t[end] != '/' && t[end] != '?' { // a '#' is not allowed in it (net/http refuses it too)
		end++
	}
	auth := t[start:end]
	// No escapes in it: net/http decodes them (and refuses some), rules
	// name hosts literally.
	if len(auth) == 0 || !ValidAuthority(auth, true) || bytes.IndexByte(auth, '%') >= 0 {
		return 400, "invalid authority in the absolute-form request target"
	}
	r.Absolute = true
	r.Authority = Span{r.Target.Lo + int32(start), r.Target.Lo + int32(end)}
	r.Path = Span{r.Target.Lo + int32(end), r.Target.Hi}
	if !validEscapes(r.Bytes(r.Path)) {
		return 400, "invalid percent-encoding in the request target"
	}
	return 0, ""
}

// WantsUpgrade reports whether the request asks to switch protocols in a
// way the proxy passes on. An upgrade to h2c is not: the HTTP/2 streams
// that would follow on the spliced connection could each name another
// :authority, and only the first request would have been decided. Such a
// request is forwarded as plain HTTP/1.1 (Upgrade is hop-by-hop).
func (r *Request) WantsUpgrade() bool {
	if !r.connUpgrade || r.Upgrade.empty() {
		return false
	}
	for tok := range tokens(r.Bytes(r.Upgrade)) {
		if equalFold(tok, "h2c") {
			return false
		}
	}
	return true
}

func HasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && equalFold(b[:len(prefix)], prefix)
}

// ValidAuthority checks host[:port] where host is a reg-name, an IPv4
// address or a bracketed IPv6 address. userinfo is refused.
func ValidAuthority(a []byte, needHost bool) bool {
	if len(a) == 0 {
		return !needHost
	}
	if len(a) > 300 {
		return false
	}
	i := 0
	if a[0] == '[' {
		for i = 1; i < len(a) && a[i] != ']'; i++ {
			if c := a[i]; !(IsHex(c) || c == ':' || c == '.') {
				return false
			}
		}
		if i == len(a) || i == 1 {
			return false
		}
		i++
	} else {
		for ; i < len(a) && a[i] != ':'; i++ {
			if !regNameTable[a[i]] {
				return false
			}
		}
		if i == 0 {
			return false
		}
	}
	if i == len(a) {
		return true
	}
	if a[i] != ':' {
		return false
	}
	for _, c := range a[i+1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(a)-i-1 <= 5
}

func IsHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// regNameTable: unreserved, sub-delims and '%' (RFC 3986 reg-name).
var regNameTable = asciiTable("-._~!$&'()*+,;=%")

var errReasonPhrase = errors.New("control character in the reason phrase")

// ParseResponse parses a response head read by readHead.
func (h *Head) ParseResponse() error {
	h.reset()
	ln, next := h.nextLine(0)
	line := h.Bytes(ln)
	if len(line) < 12 || line[8] != ' ' {
		return ErrMalformedResponse
	}
	minor, err := parseVersion(line[:8])
	if err != nil {
		return ErrMalformedResponse
	}
	code := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return ErrMalformedResponse
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 || len(line) > 12 && line[12] != ' ' {
		return ErrMalformedResponse
	}
	for _, c := range line[min(len(line), 13):] { // reason-phrase: HTAB, SP, VCHAR, obs-text
		if c < ' ' && c != '\t' || c == 0x7f {
			return errors.Join(ErrMalformedResponse, errReasonPhrase)
		}
	}
	h.Minor, h.Status = minor, code
	h.Reason = Span{ln.Lo + 9, ln.Hi}
	if err := h.parseFields(next); err != nil {
		return ErrMalformedResponse
	}
	return nil
}

// errUpstreamProtocol wraps malformed upstream responses.
var ErrMalformedResponse = errors.New("malformed response")

func (r *Request) HasBody() bool { return r.Chunked || r.ContentLength > 0 }

// Replayable reports whether r may be sent again after a reused upstream
// connection failed without a byte of response: the rule of net/http's
// Transport (RFC 9110 9.2.2), since the upstream may have processed it. A
// body is never replayed: it was streamed, not kept.
func (r *Request) Replayable() bool {
	if r.HasBody() {
		return false
	}
	switch string(r.Bytes(r.Method)) {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	return r.hasField("Idempotency-Key") || r.hasField("X-Idempotency-Key")
}

// hasField reports whether h has a field named name (not hop-by-hop).
func (h *Head) hasField(name string) bool {
	for i := range h.Fields {
		if f := &h.Fields[i]; f.Kind == FieldOther && equalFold(h.Bytes(f.Name), name) {
			return true
		}
	}
	return false
}
