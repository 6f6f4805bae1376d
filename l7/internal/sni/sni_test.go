package sni

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/egressd/egressd/l7/internal/sni/snitest"
)

func TestPeek(t *testing.T) {
	withSNI := snitest.Record(t, &tls.Config{ServerName: "api.example.com", NextProtos: []string{"h2", "http/1.1"}})
	noSNI := snitest.Record(t, &tls.Config{InsecureSkipVerify: true})
	tests := []struct {
		name    string
		wire    []byte
		bufSize int
		reader  func(io.Reader) io.Reader
		sni     string
		alpn    []string
		wantErr bool
	}{
		{name: "sni and alpn", wire: withSNI, sni: "api.example.com", alpn: []string{"h2", "http/1.1"}},
		{name: "no sni", wire: noSNI},
		{name: "one byte per read", wire: withSNI, reader: iotest.OneByteReader, sni: "api.example.com", alpn: []string{"h2", "http/1.1"}},
		{name: "split over records", wire: snitest.Refragment(withSNI, 50), sni: "api.example.com", alpn: []string{"h2", "http/1.1"}},
		{name: "larger than the buffer", wire: withSNI, bufSize: 16, sni: "api.example.com", alpn: []string{"h2", "http/1.1"}},
		{name: "truncated", wire: withSNI[:100], wantErr: true},
		{name: "http request", wire: []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), wantErr: true},
		{name: "alert record", wire: []byte{0x15, 3, 3, 0, 2, 2, 40}, wantErr: true},
		{name: "empty record", wire: []byte{0x16, 3, 1, 0, 0}, wantErr: true},
		{name: "server hello", wire: []byte{0x16, 3, 3, 0, 4, 2, 0, 0, 0}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r io.Reader = bytes.NewReader(tt.wire)
			if tt.reader != nil {
				r = tt.reader(r)
			}
			br := bufio.NewReaderSize(r, max(tt.bufSize, 16))
			if tt.bufSize == 0 {
				br = bufio.NewReader(r)
			}
			h, br2, err := Peek(br)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parsed %+v, want an error", h)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.ServerName != tt.sni || !slices.Equal(h.ALPN, tt.alpn) || h.Size != len(tt.wire) {
				t.Errorf("got sni %q alpn %q size %d, want %q %q %d", h.ServerName, h.ALPN, h.Size, tt.sni, tt.alpn, len(tt.wire))
			}
			// Nothing was consumed: the upstream gets every byte, in order.
			rest, err := io.ReadAll(br2)
			if err != nil || !bytes.Equal(rest, tt.wire) {
				t.Errorf("reader replays %d bytes (err %v), want the %d of the hello", len(rest), err, len(tt.wire))
			}
		})
	}
}

func TestPeekRejectsBadNames(t *testing.T) {
	hello := snitest.Record(t, &tls.Config{ServerName: "api.example.com"})
	for _, bad := range []string{"api.example.co\x00", "api..xample.com", "api.example.co.", "api.exa/ple.com"} {
		wire := bytes.Replace(hello, []byte("api.example.com"), []byte(bad), 1)
		if _, _, err := Peek(bufio.NewReader(bytes.NewReader(wire))); !errors.Is(err, ErrNotClientHello) {
			t.Errorf("sni %q: err %v, want ErrNotClientHello", bad, err)
		}
	}
}

// FuzzClientHello feeds arbitrary bytes to the parser: it must never panic,
// never consume, and agree with crypto/tls on the server name of every hello
// both accept. (Rejecting what crypto/tls would accept only denies.)
func FuzzClientHello(f *testing.F) {
	f.Add(snitest.Record(f, &tls.Config{ServerName: "api.example.com", NextProtos: []string{"h2"}}))
	f.Add(snitest.Record(f, &tls.Config{InsecureSkipVerify: true}))
	f.Add(snitest.Refragment(snitest.Record(f, &tls.Config{ServerName: "a.b"}), 7))
	f.Add([]byte{0x16, 3, 1, 0, 4, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, wire []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(wire), 64)
		h, br2, err := Peek(br)
		rest, _ := io.ReadAll(br2)
		if !bytes.Equal(rest, wire) {
			t.Fatalf("peek consumed bytes: replays %d of %d", len(rest), len(wire))
		}
		if err != nil {
			return
		}
		if h.Size > len(wire) || (h.ServerName != "" && !ValidName([]byte(h.ServerName))) {
			t.Fatalf("bad result %+v for %d bytes", h, len(wire))
		}
		if want, ok := tlsServerName(wire); ok && want != h.ServerName {
			t.Fatalf("sni %q, crypto/tls says %q", h.ServerName, want)
		}
	})
}

// tlsServerName asks crypto/tls's server for the SNI of wire; ok=false when
// crypto/tls does not get as far as reading the hello.
func tlsServerName(wire []byte) (string, bool) {
	var name string
	var seen bool
	_ = tls.Server(replayConn{Reader: bytes.NewReader(wire)}, &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		name, seen = h.ServerName, true
		return nil, errors.New("stop")
	}}).Handshake()
	return name, seen
}

// replayConn reads fixed bytes and discards what is written to it.
type replayConn struct {
	net.Conn // nil: only Read, Write and Close are used by tls.Server here
	*bytes.Reader
}

func (c replayConn) Read(b []byte) (int, error)  { return c.Reader.Read(b) }
func (c replayConn) Write(b []byte) (int, error) { return len(b), nil }
func (c replayConn) Close() error                { return nil }

// hello builds a ClientHello body by hand: the fixed part, then the given
// extensions block (nil: none at all).
func hello(exts []byte) []byte {
	b := make([]byte, 2+32)        // legacy_version, random
	b = append(b, 0)               // legacy_session_id
	b = append(b, 0, 2, 0x13, 0x1) // cipher_suites
	b = append(b, 1, 0)            // legacy_compression_methods
	if exts != nil {
		b = append(b, byte(len(exts)>>8), byte(len(exts)))
		b = append(b, exts...)
	}
	return b
}

// ext is one extension: type, then its data with a 2-byte length.
func ext(typ uint16, data ...byte) []byte {
	return append([]byte{byte(typ >> 8), byte(typ), byte(len(data) >> 8), byte(len(data))}, data...)
}

// TestParseEdges tries what a hand-made cursor gets wrong: lengths that
// overrun what encloses them, duplicate extensions, trailing bytes, empty
// ALPN entries, unknown name types.
func TestParseEdges(t *testing.T) {
	name := func(n string) []byte { // server_name data with one host_name
		l := len(n) + 3
		return append([]byte{byte(l >> 8), byte(l), 0, byte(len(n) >> 8), byte(len(n))}, n...)
	}
	sniExt := ext(0, name("a.test")...)
	tests := []struct {
		name    string
		body    []byte
		sni     string
		alpn    []string
		wantErr bool
	}{
		{name: "no extensions", body: hello(nil)},
		{name: "empty extensions", body: hello([]byte{})},
		{name: "sni", body: hello(sniExt), sni: "a.test"},
		{name: "unknown extension skipped", body: hello(append(ext(0xfe0d, 1, 2, 3), sniExt...)), sni: "a.test"},
		{name: "alpn", body: hello(ext(16, 0, 6, 2, 'h', '2', 2, 'h', '3')), alpn: []string{"h2", "h3"}},
		{name: "unknown name type skipped", body: hello(ext(0, 0, 4, 1, 0, 1, 'x')), sni: ""},
		{name: "duplicate server_name", body: hello(append(sniExt, sniExt...)), wantErr: true},
		{name: "duplicate alpn", body: hello(append(ext(16, 0, 3, 2, 'h', '2'), ext(16, 0, 3, 2, 'h', '2')...)), wantErr: true},
		{name: "two host_names", body: hello(ext(0, 0, 8, 0, 0, 1, 'a', 0, 0, 1, 'b')), wantErr: true},
		{name: "empty alpn entry", body: hello(ext(16, 0, 1, 0)), wantErr: true},
		{name: "empty alpn list", body: hello(ext(16, 0, 0)), wantErr: true},
		{name: "empty server_name list", body: hello(ext(0, 0, 0)), wantErr: true},
		{name: "host_name overruns its list", body: hello(ext(0, 0, 4, 0, 0, 9, 'x')), wantErr: true},
		{name: "list overruns the extension", body: hello(ext(0, 0, 9, 0, 0, 1, 'x')), wantErr: true},
		{name: "bytes after the list", body: hello(ext(0, append(name("a.test"), 0)...)), wantErr: true},
		{name: "extension overruns the block", body: hello([]byte{0, 0, 0, 9, 1}), wantErr: true},
		{name: "bytes after the extensions", body: append(hello(sniExt), 0), wantErr: true},
		{name: "truncated before extensions", body: hello(nil)[:30], wantErr: true},
		{name: "IP literal name", body: hello(ext(0, name("[::1]")...)), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := Parse(tt.body)
			if tt.wantErr {
				if !errors.Is(err, ErrNotClientHello) {
					t.Fatalf("parsed %+v (err %v), want ErrNotClientHello", h, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.ServerName != tt.sni || !slices.Equal(h.ALPN, tt.alpn) {
				t.Errorf("got sni %q alpn %q, want %q %q", h.ServerName, h.ALPN, tt.sni, tt.alpn)
			}
		})
	}
}

func TestValidName(t *testing.T) {
	for name, want := range map[string]bool{
		"api.example.com": true, "a": true, "x_y-z.test": true,
		"": false, ".a": false, "a.": false, "a..b": false, "a b": false,
		"a:443": false, "[::1]": false, "ä.test": false, strings.Repeat("a", 254): false,
	} {
		if got := ValidName([]byte(name)); got != want {
			t.Errorf("ValidName(%q) = %v, want %v", name, got, want)
		}
	}
}
