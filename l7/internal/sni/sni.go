// Package sni reads what TLS passthrough needs from a ClientHello — the
// server name and the offered ALPN protocols — without consuming a byte, so
// the whole hello can still be relayed to the upstream. It reads from a
// bufio.Reader (no networking but the refusal alert) and parses with
// golang.org/x/crypto/cryptobyte, whose length-prefixed reads check every
// length against what encloses it, so garbage is an error, never a panic.
//
// Why a package of its own: the ClientHello is attacker-supplied input parsed
// before any decision; kept apart it is fuzzed on its own (FuzzClientHello,
// against crypto/tls's own reading of the same bytes) and depends on nothing
// of the proxy.
//
// Files: sni.go (record reassembly across TLS records, Peek; the hello's
// body, Parse; the server-name check, ValidName), alert.go (SendAlert, the
// fatal alert written instead of a ServerHello when a connection is
// refused). snitest records real hellos
// from crypto/tls for tests.
package sni

import (
	"bufio"
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// What a TLS ClientHello may weigh before the reader gives up on it. A TLS
// record carries at most 16 KiB of plaintext; a hello with post-quantum key
// shares is ~2 KiB, so 64 KiB over several records is generous but bounded.
const (
	maxTLSRecord = 1<<14 + 2048 // plaintext limit plus the slack TLS 1.2 allows
	// MaxHello is the most bytes of TLS records a hello may span.
	MaxHello = 64 << 10
	// RecordHeader is the length of a TLS record header.
	RecordHeader = 5
)

// ErrNotClientHello reports bytes that are not a TLS handshake record holding
// a well-formed ClientHello.
var ErrNotClientHello = errors.New("not a tls client hello")

// Hello is what TLS passthrough needs from a client's ClientHello.
type Hello struct {
	ServerName string   // SNI host_name, as sent; "" when absent
	ALPN       []string // offered ALPN protocols, in order
	Size       int      // bytes of TLS records the hello spans
}

// Peek parses the ClientHello at the head of br without consuming it: every
// byte stays buffered for the upstream. A hello that does not fit br's buffer
// is peeked through a larger reader stacked on br, which is then returned and
// must be used for all further reads of the connection.
func Peek(br *bufio.Reader) (Hello, *bufio.Reader, error) {
	var (
		msg  []byte // handshake message bytes gathered from records
		off  int    // bytes of records already parsed
		need = 4    // handshake bytes needed before the next check
	)
	for len(msg) < need {
		hdr, err := peekAt(&br, off, RecordHeader)
		if err != nil {
			return Hello{}, br, err
		}
		var (
			s          = cryptobyte.String(hdr)
			typ, major uint8
			minor      uint8
			n          uint16
		)
		s.ReadUint8(&typ)
		s.ReadUint8(&major)
		s.ReadUint8(&minor)
		s.ReadUint16(&n)
		if typ != 0x16 || major != 3 {
			return Hello{}, br, fmt.Errorf("%w: record type %#x version %#x.%#x", ErrNotClientHello, typ, major, minor)
		}
		if n == 0 || int(n) > maxTLSRecord {
			return Hello{}, br, fmt.Errorf("%w: record length %d", ErrNotClientHello, n)
		}
		if off+RecordHeader+int(n) > MaxHello {
			return Hello{}, br, fmt.Errorf("%w: longer than %d bytes", ErrNotClientHello, MaxHello)
		}
		rec, err := peekAt(&br, off+RecordHeader, int(n))
		if err != nil {
			return Hello{}, br, err
		}
		msg = append(msg, rec...)
		off += RecordHeader + int(n)
		if len(msg) >= 4 && need == 4 {
			if msg[0] != 1 {
				return Hello{}, br, fmt.Errorf("%w: handshake type %d", ErrNotClientHello, msg[0])
			}
			need = 4 + (int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3]))
			if need > MaxHello {
				return Hello{}, br, fmt.Errorf("%w: handshake length %d", ErrNotClientHello, need)
			}
		}
	}
	h, err := Parse(msg[4:need])
	if err != nil {
		return Hello{}, br, err
	}
	h.Size = off
	return h, br, nil
}

// peekAt returns the n bytes at offset off of *br without consuming them,
// blocking until they arrive. When they lie beyond the buffer, *br is replaced
// by a reader of MaxHello bytes layered on it (reading the old buffer first,
// so no byte is lost or reordered).
func peekAt(br **bufio.Reader, off, n int) ([]byte, error) {
	if off+n > (*br).Size() {
		*br = bufio.NewReaderSize(*br, MaxHello)
	}
	b, err := (*br).Peek(off + n)
	if err != nil {
		return nil, fmt.Errorf("read client hello: %w", err)
	}
	return b[off:], nil
}

// Parse decodes a ClientHello body (RFC 8446 section 4.1.2, after the 4-byte
// handshake header). Only SNI and ALPN are kept; Size is left 0.
func Parse(b []byte) (Hello, error) {
	var h Hello
	s := cryptobyte.String(b)
	var sessionID, suites, compression cryptobyte.String
	if !s.Skip(2+32) || // legacy_version, random
		!s.ReadUint8LengthPrefixed(&sessionID) ||
		!s.ReadUint16LengthPrefixed(&suites) ||
		!s.ReadUint8LengthPrefixed(&compression) {
		return h, fmt.Errorf("%w: truncated before extensions", ErrNotClientHello)
	}
	if s.Empty() {
		return h, nil // no extensions at all (SSL 3.0 style): no SNI
	}
	var exts cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&exts) || !s.Empty() {
		return h, fmt.Errorf("%w: bad extensions block", ErrNotClientHello)
	}
	var seenSNI, seenALPN bool
	for !exts.Empty() {
		var typ uint16
		var data cryptobyte.String
		if !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&data) {
			return h, fmt.Errorf("%w: truncated extension", ErrNotClientHello)
		}
		var err error
		switch typ {
		case 0: // server_name
			if seenSNI {
				return h, fmt.Errorf("%w: duplicate server_name", ErrNotClientHello)
			}
			seenSNI = true
			h.ServerName, err = parseServerName(data)
		case 16: // application_layer_protocol_negotiation
			if seenALPN {
				return h, fmt.Errorf("%w: duplicate alpn", ErrNotClientHello)
			}
			seenALPN = true
			h.ALPN, err = parseALPN(data)
		}
		if err != nil {
			return h, err
		}
	}
	return h, nil
}

// parseServerName returns the host_name entry of a server_name extension.
func parseServerName(data cryptobyte.String) (string, error) {
	var list cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&list) || !data.Empty() || list.Empty() {
		return "", fmt.Errorf("%w: bad server_name", ErrNotClientHello)
	}
	var name string
	for !list.Empty() {
		var typ uint8
		var v cryptobyte.String
		if !list.ReadUint8(&typ) || !list.ReadUint16LengthPrefixed(&v) {
			return "", fmt.Errorf("%w: truncated server_name", ErrNotClientHello)
		}
		if typ != 0 {
			continue // only host_name (0) is defined
		}
		if name != "" {
			return "", fmt.Errorf("%w: two host_names", ErrNotClientHello)
		}
		if !ValidName(v) {
			return "", fmt.Errorf("%w: invalid host_name %q", ErrNotClientHello, []byte(v))
		}
		name = string(v)
	}
	return name, nil
}

// ValidName accepts a DNS name as RFC 6066 puts it in SNI: ASCII letters,
// digits, '-', '_' and dots, no empty label, no trailing dot, no IP literal
// characters. Anything else never reaches the rules.
func ValidName(v []byte) bool {
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
func parseALPN(data cryptobyte.String) ([]string, error) {
	var list cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&list) || !data.Empty() || list.Empty() {
		return nil, fmt.Errorf("%w: bad alpn", ErrNotClientHello)
	}
	var protos []string
	for !list.Empty() {
		var p cryptobyte.String
		if !list.ReadUint8LengthPrefixed(&p) || p.Empty() {
			return nil, fmt.Errorf("%w: bad alpn entry", ErrNotClientHello)
		}
		protos = append(protos, string(p))
	}
	return protos, nil
}
