package l7

import (
	"bufio"
	"errors"
	"fmt"
)

// What a TLS ClientHello may weigh before the proxy gives up on it. A TLS
// record carries at most 16 KiB of plaintext; a hello with post-quantum key
// shares is ~2 KiB, so 64 KiB over several records is generous but bounded.
const (
	maxTLSRecord    = 1<<14 + 2048 // plaintext limit plus the slack TLS 1.2 allows
	maxClientHello  = 64 << 10
	tlsRecordHeader = 5
)

// errNotClientHello reports bytes that are not a TLS handshake record holding
// a well-formed ClientHello.
var errNotClientHello = errors.New("not a tls client hello")

// clientHello is what TLS passthrough needs from the app's ClientHello.
type clientHello struct {
	serverName string   // SNI host_name, as sent; "" when absent
	alpn       []string // offered ALPN protocols, in order
	size       int      // bytes of TLS records the hello spans
}

// peekClientHello parses the ClientHello at the head of br without consuming
// it: every byte stays buffered for the upstream. A hello that does not fit
// br's buffer is peeked through a larger reader stacked on br, which is then
// returned and must be used for all further reads of the connection.
func peekClientHello(br *bufio.Reader) (clientHello, *bufio.Reader, error) {
	var (
		msg  []byte // handshake message bytes gathered from records
		off  int    // bytes of records already parsed
		need = 4    // handshake bytes needed before the next check
	)
	for len(msg) < need {
		hdr, err := peekAt(&br, off, tlsRecordHeader)
		if err != nil {
			return clientHello{}, br, err
		}
		if hdr[0] != 0x16 || hdr[1] != 3 {
			return clientHello{}, br, fmt.Errorf("%w: record type %#x version %#x.%#x", errNotClientHello, hdr[0], hdr[1], hdr[2])
		}
		n := int(hdr[3])<<8 | int(hdr[4])
		if n == 0 || n > maxTLSRecord {
			return clientHello{}, br, fmt.Errorf("%w: record length %d", errNotClientHello, n)
		}
		if off+tlsRecordHeader+n > maxClientHello {
			return clientHello{}, br, fmt.Errorf("%w: longer than %d bytes", errNotClientHello, maxClientHello)
		}
		rec, err := peekAt(&br, off+tlsRecordHeader, n)
		if err != nil {
			return clientHello{}, br, err
		}
		msg = append(msg, rec...)
		off += tlsRecordHeader + n
		if len(msg) >= 4 && need == 4 {
			if msg[0] != 1 {
				return clientHello{}, br, fmt.Errorf("%w: handshake type %d", errNotClientHello, msg[0])
			}
			need = 4 + (int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3]))
			if need > maxClientHello {
				return clientHello{}, br, fmt.Errorf("%w: handshake length %d", errNotClientHello, need)
			}
		}
	}
	h, err := parseClientHello(msg[4:need])
	if err != nil {
		return clientHello{}, br, err
	}
	h.size = off
	return h, br, nil
}

// peekAt returns the n bytes at offset off of *br without consuming them,
// blocking until they arrive. When they lie beyond the buffer, *br is replaced
// by a reader of maxClientHello bytes layered on it (reading the old buffer
// first, so no byte is lost or reordered).
func peekAt(br **bufio.Reader, off, n int) ([]byte, error) {
	if off+n > (*br).Size() {
		*br = bufio.NewReaderSize(*br, maxClientHello)
	}
	b, err := (*br).Peek(off + n)
	if err != nil {
		return nil, fmt.Errorf("read client hello: %w", err)
	}
	return b[off:], nil
}

// parseClientHello decodes a ClientHello body (RFC 8446 section 4.1.2, after
// the 4-byte handshake header). Only SNI and ALPN are kept; every length is
// checked against what encloses it, so garbage is an error, never a panic.
func parseClientHello(b []byte) (clientHello, error) {
	var h clientHello
	s := helloCursor(b)
	if !s.skip(2+32) || // legacy_version, random
		!s.skipVec(1) || // legacy_session_id
		!s.skipVec(2) || // cipher_suites
		!s.skipVec(1) { // legacy_compression_methods
		return h, fmt.Errorf("%w: truncated before extensions", errNotClientHello)
	}
	if len(s) == 0 {
		return h, nil // no extensions at all (SSL 3.0 style): no SNI
	}
	exts, ok := s.vec(2)
	if !ok || len(s) != 0 {
		return h, fmt.Errorf("%w: bad extensions block", errNotClientHello)
	}
	var seenSNI, seenALPN bool
	for len(exts) > 0 {
		typ, ok1 := exts.u16()
		data, ok2 := exts.vec(2)
		if !ok1 || !ok2 {
			return h, fmt.Errorf("%w: truncated extension", errNotClientHello)
		}
		var err error
		switch typ {
		case 0: // server_name
			if seenSNI {
				return h, fmt.Errorf("%w: duplicate server_name", errNotClientHello)
			}
			seenSNI = true
			h.serverName, err = parseSNI(data)
		case 16: // application_layer_protocol_negotiation
			if seenALPN {
				return h, fmt.Errorf("%w: duplicate alpn", errNotClientHello)
			}
			seenALPN = true
			h.alpn, err = parseALPN(data)
		}
		if err != nil {
			return h, err
		}
	}
	return h, nil
}

// parseSNI returns the host_name entry of a server_name extension.
func parseSNI(data helloCursor) (string, error) {
	list, ok := data.vec(2)
	if !ok || len(data) != 0 || len(list) == 0 {
		return "", fmt.Errorf("%w: bad server_name", errNotClientHello)
	}
	var name string
	for len(list) > 0 {
		typ, ok1 := list.u8()
		v, ok2 := list.vec(2)
		if !ok1 || !ok2 {
			return "", fmt.Errorf("%w: truncated server_name", errNotClientHello)
		}
		if typ != 0 {
			continue // only host_name (0) is defined
		}
		if name != "" {
			return "", fmt.Errorf("%w: two host_names", errNotClientHello)
		}
		if !validSNI(v) {
			return "", fmt.Errorf("%w: invalid host_name %q", errNotClientHello, []byte(v))
		}
		name = string(v)
	}
	return name, nil
}

// validSNI accepts a DNS name as RFC 6066 puts it in SNI: ASCII letters,
// digits, '-', '_' and dots, no empty label, no trailing dot, no IP literal
// characters. Anything else never reaches the rules.
func validSNI(v []byte) bool {
	if len(v) == 0 || len(v) > 253 || v[0] == '.' || v[len(v)-1] == '.' {
		return false
	}
	for i, c := range v {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		case c == '.' && v[i-1] != '.':
		default:
			return false
		}
	}
	return true
}

// parseALPN returns the protocol names of an ALPN extension.
func parseALPN(data helloCursor) ([]string, error) {
	list, ok := data.vec(2)
	if !ok || len(data) != 0 || len(list) == 0 {
		return nil, fmt.Errorf("%w: bad alpn", errNotClientHello)
	}
	var protos []string
	for len(list) > 0 {
		p, ok := list.vec(1)
		if !ok || len(p) == 0 {
			return nil, fmt.Errorf("%w: bad alpn entry", errNotClientHello)
		}
		protos = append(protos, string(p))
	}
	return protos, nil
}

// helloCursor is the unread rest of a TLS structure; each method consumes
// from its front and reports false, consuming nothing useful, when short.
type helloCursor []byte

func (s *helloCursor) skip(n int) bool {
	if len(*s) < n {
		return false
	}
	*s = (*s)[n:]
	return true
}

func (s *helloCursor) u8() (byte, bool) {
	if len(*s) < 1 {
		return 0, false
	}
	v := (*s)[0]
	*s = (*s)[1:]
	return v, true
}

func (s *helloCursor) u16() (uint16, bool) {
	if len(*s) < 2 {
		return 0, false
	}
	v := uint16((*s)[0])<<8 | uint16((*s)[1])
	*s = (*s)[2:]
	return v, true
}

// vec consumes a vector with a lenBytes-byte (1 or 2) length prefix.
func (s *helloCursor) vec(lenBytes int) (helloCursor, bool) {
	var n int
	switch lenBytes {
	case 1:
		v, ok := s.u8()
		if !ok {
			return nil, false
		}
		n = int(v)
	default:
		v, ok := s.u16()
		if !ok {
			return nil, false
		}
		n = int(v)
	}
	if len(*s) < n {
		return nil, false
	}
	v := (*s)[:n]
	*s = (*s)[n:]
	return v, true
}

func (s *helloCursor) skipVec(lenBytes int) bool {
	_, ok := s.vec(lenBytes)
	return ok
}
