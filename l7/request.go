package l7

// Request and response lines, and the request checks done before matching.

import (
	"bytes"
	"errors"
)

// Parsed request facts beyond head: where the request is going.
type request struct {
	head
	authority span // effective authority: absolute-form URI host over Host
	path      span // target to send upstream (origin-form); empty: "/"
	absolute  bool // the target was in absolute form
}

// parse parses a request head read by readHead.
func (r *request) parse() error {
	r.reset()
	r.authority, r.path, r.absolute = span{}, span{}, false
	ln, next := r.nextLine(0)
	line := r.bytes(ln)
	sp1 := indexSP(line, 0)
	if sp1 <= 0 {
		return errMalformed
	}
	sp2 := indexSP(line, sp1+1)
	if sp2 <= sp1+1 {
		return errMalformed
	}
	for _, b := range line[:sp1] {
		if !isTokenChar(b) {
			return errMalformed
		}
	}
	for _, b := range line[sp1+1 : sp2] {
		if b <= ' ' || b == 0x7f {
			return errMalformed
		}
	}
	r.method = span{ln.lo, ln.lo + int32(sp1)}
	r.target = span{ln.lo + int32(sp1+1), ln.lo + int32(sp2)}
	minor, err := parseVersion(line[sp2+1:])
	if err != nil {
		return err
	}
	r.minor = minor
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
		return 0, errMalformed
	}
	if v[5] != '1' || v[7] > '1' {
		return 0, errVersion
	}
	return int(v[7] - '0'), nil
}

// check enforces the framing and authority rules that must hold before a
// request is matched. It returns 0 or the status and reason of the refusal;
// every refusal closes the connection.
func (r *request) check() (int, string) {
	switch {
	case r.hosts > 1:
		return 400, "several Host header fields"
	case r.hosts == 0 && r.minor == 1:
		return 400, "no Host header field"
	case (r.chunked || r.teOther) && r.contentLength >= 0:
		return 400, "both Content-Length and Transfer-Encoding"
	case (r.chunked || r.teOther) && r.minor == 0:
		return 400, "Transfer-Encoding in an HTTP/1.0 request"
	case r.teOther:
		return 501, "unsupported Transfer-Encoding (only chunked is)"
	case r.expectOther && r.minor == 1: // HTTP/1.0 requests' Expect is ignored (RFC 9110 10.1.1)
		return 417, "unsupported expectation (only 100-continue is)"
	}
	if r.hosts == 1 && !validAuthority(r.bytes(r.host), r.minor == 1) {
		return 400, "invalid Host header field"
	}
	t := r.bytes(r.target)
	method := r.bytes(r.method)
	switch {
	case string(method) == "CONNECT":
		return 405, "CONNECT is not allowed here: connect to the destination directly"
	case t[0] == '/':
		r.path = r.target
		r.authority = r.host
	case len(t) == 1 && t[0] == '*' && string(method) == "OPTIONS":
		r.path = r.target
		r.authority = r.host
	case hasPrefixFold(t, "http://") || hasPrefixFold(t, "https://"):
		return r.absoluteForm()
	default:
		return 400, "invalid request target"
	}
	if r.authority.empty() {
		return 400, "no authority: the request needs a Host header field"
	}
	if !validEscapes(r.bytes(r.path)) {
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
			if i+2 >= len(target) || !isHex(target[i+1]) || !isHex(target[i+2]) {
				return false
			}
			i += 2
		}
	}
	return true
}

// absoluteForm takes the authority from an absolute-form target: it wins
// over Host (RFC 9112 3.2.2), and it is what the upstream will be told.
func (r *request) absoluteForm() (int, string) {
	t := r.bytes(r.target)
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
	if len(auth) == 0 || !validAuthority(auth, true) || bytes.IndexByte(auth, '%') >= 0 {
		return 400, "invalid authority in the absolute-form request target"
	}
	r.absolute = true
	r.authority = span{r.target.lo + int32(start), r.target.lo + int32(end)}
	r.path = span{r.target.lo + int32(end), r.target.hi}
	if !validEscapes(r.bytes(r.path)) {
		return 400, "invalid percent-encoding in the request target"
	}
	return 0, ""
}

// wantsUpgrade reports whether the request asks to switch protocols in a
// way the proxy passes on. An upgrade to h2c is not: the HTTP/2 streams
// that would follow on the spliced connection could each name another
// :authority, and only the first request would have been decided. Such a
// request is forwarded as plain HTTP/1.1 (Upgrade is hop-by-hop).
func (r *request) wantsUpgrade() bool {
	if !r.connUpgrade || r.upgrade.empty() {
		return false
	}
	for tok := range tokens(r.bytes(r.upgrade)) {
		if equalFold(tok, "h2c") {
			return false
		}
	}
	return true
}

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && equalFold(b[:len(prefix)], prefix)
}

// validAuthority checks host[:port] where host is a reg-name, an IPv4
// address or a bracketed IPv6 address. userinfo is refused.
func validAuthority(a []byte, needHost bool) bool {
	if len(a) == 0 {
		return !needHost
	}
	if len(a) > 300 {
		return false
	}
	i := 0
	if a[0] == '[' {
		for i = 1; i < len(a) && a[i] != ']'; i++ {
			if c := a[i]; !(isHex(c) || c == ':' || c == '.') {
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

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// regNameTable: unreserved, sub-delims and '%' (RFC 3986 reg-name).
var regNameTable = asciiTable("-._~!$&'()*+,;=%")

var errReasonPhrase = errors.New("control character in the reason phrase")

// parseResponse parses a response head read by readHead.
func (h *head) parseResponse() error {
	h.reset()
	ln, next := h.nextLine(0)
	line := h.bytes(ln)
	if len(line) < 12 || line[8] != ' ' {
		return errUpstreamProtocol
	}
	minor, err := parseVersion(line[:8])
	if err != nil {
		return errUpstreamProtocol
	}
	code := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return errUpstreamProtocol
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 || len(line) > 12 && line[12] != ' ' {
		return errUpstreamProtocol
	}
	for _, c := range line[min(len(line), 13):] { // reason-phrase: HTAB, SP, VCHAR, obs-text
		if c < ' ' && c != '\t' || c == 0x7f {
			return errors.Join(errUpstreamProtocol, errReasonPhrase)
		}
	}
	h.minor, h.status = minor, code
	h.reason = span{ln.lo + 9, ln.hi}
	if err := h.parseFields(next); err != nil {
		return errUpstreamProtocol
	}
	return nil
}
