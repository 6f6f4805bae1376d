package accesslog

import (
	"net/netip"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"
)

// Line is one request's access-log line. Keys are written in field order;
// GRPCStatus, Reason, Namespace and Pod only when set.
type Line struct {
	Client, OrigDst netip.AddrPort
	// ClientText and OrigText are the text forms of Client and OrigDst when
	// the caller has them cached ("": formatted here).
	ClientText, OrigText string
	Host                 string
	Port                 uint16
	Protocol, Upstream   string
	Rule, Decision       string
	Status               int
	GRPCStatus           string
	BytesIn, BytesOut    int64
	Duration             time.Duration
	Reason               string
	Namespace, Pod       string
}

// Log encodes l as slog's handler would write the record "request" with
// l's attributes at Info, at time now, and buffers it.
func (a *Handler) Log(now time.Time, l *Line) {
	d := l.Duration
	var scratch [512]byte
	b := scratch[:0]
	if a.json {
		b = append(b, `{"time":"`...)
		b = now.AppendFormat(b, time.RFC3339Nano)
		b = append(b, `","level":"INFO","msg":"request"`...)
	} else {
		b = append(b, "time="...)
		b = appendRFC3339Millis(b, now)
		b = append(b, " level=INFO msg=request"...)
	}
	b = a.addr(b, "client", l.ClientText, l.Client)
	b = a.addr(b, "orig_dst", l.OrigText, l.OrigDst)
	b = a.str(b, "host", l.Host)
	b = a.int(b, "port", int64(l.Port))
	b = a.str(b, "protocol", l.Protocol)
	b = a.str(b, "upstream", l.Upstream)
	b = a.str(b, "rule", l.Rule)
	b = a.str(b, "decision", l.Decision)
	b = a.int(b, "status", int64(l.Status))
	if l.GRPCStatus != "" {
		b = a.str(b, "grpc_status", l.GRPCStatus)
	}
	b = a.int(b, "bytes_in", l.BytesIn)
	b = a.int(b, "bytes_out", l.BytesOut)
	if a.json {
		b = a.int(b, "duration", int64(d)) // slog's JSON form: nanoseconds
	} else {
		b = append(b, " duration="...)
		b = append(b, d.String()...)
	}
	if l.Reason != "" {
		b = a.str(b, "reason", l.Reason)
	}
	if ns := l.Namespace; ns != "" {
		b = a.str(b, "namespace", ns)
	}
	if pod := l.Pod; pod != "" {
		b = a.str(b, "pod", pod)
	}
	if a.json {
		b = append(b, '}')
	}
	b = append(b, '\n')
	a.add(b)
}

// key appends the separator and key before a value.
func (a *Handler) key(b []byte, k string) []byte {
	if a.json {
		b = append(b, ',', '"')
		b = append(b, k...)
		return append(b, '"', ':')
	}
	b = append(b, ' ')
	b = append(b, k...)
	return append(b, '=')
}

func (a *Handler) int(b []byte, k string, v int64) []byte {
	return strconv.AppendInt(a.key(b, k), v, 10)
}

// addr appends text, or ap formatted without allocating when text is "".
func (a *Handler) addr(b []byte, k, text string, ap netip.AddrPort) []byte {
	if text != "" || ap.Addr().Zone() != "" { // a zone may need quoting
		return a.str(b, k, AddrText(text, ap))
	}
	b = a.key(b, k)
	if a.json {
		return append(ap.AppendTo(append(b, '"')), '"')
	}
	return ap.AppendTo(b) // digits, dots, colons and brackets: never quoted
}

func (a *Handler) str(b []byte, k, v string) []byte {
	b = a.key(b, k)
	if a.json {
		b = append(b, '"')
		b = appendJSONString(b, v)
		return append(b, '"')
	}
	if textNeedsQuoting(v) {
		return strconv.AppendQuote(b, v)
	}
	return append(b, v...)
}

// appendRFC3339Millis is slog's text time: RFC 3339 with exactly three
// fractional digits.
func appendRFC3339Millis(b []byte, t time.Time) []byte {
	const prefixLen = len("2006-01-02T15:04:05.000")
	n := len(b)
	t = t.Truncate(time.Millisecond).Add(time.Millisecond / 10) // RFC3339Nano trims zeros: keep 4 digits, drop the 4th
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b[:n+prefixLen], b[n+prefixLen+1:]...)
}

// jsonSafe reports whether an ASCII byte needs no escaping in a JSON string.
func jsonSafe(c byte) bool { return c >= 0x20 && c != '"' && c != '\\' }

// appendJSONString escapes s as slog's JSON handler does.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if jsonSafe(c) {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(append(b, s[start:i]...), `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(append(b, s[start:i]...), '\\', 'u', '2', '0', '2', hex[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	return append(b, s[start:]...)
}

// textNeedsQuoting is slog's text handler's rule for quoting a string.
func textNeedsQuoting(s string) bool {
	if s == "" {
		return true
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c != '\\' && (c == ' ' || c == '=' || !jsonSafe(c)) {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
		i += size
	}
	return false
}

// AddrText is text, or ap formatted when text is empty.
func AddrText(text string, ap netip.AddrPort) string {
	if text != "" {
		return text
	}
	return ap.String()
}
