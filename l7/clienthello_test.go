package l7

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"slices"
	"testing"
	"testing/iotest"
)

// recordHello captures the ClientHello crypto/tls sends for cfg: the exact
// bytes of its TLS records, as a passthrough client would put on the wire.
func recordHello(tb testing.TB, cfg *tls.Config) []byte {
	tb.Helper()
	client, server := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = tls.Client(client, cfg).Handshake() // fails once server closes
	}()
	var buf bytes.Buffer
	hdr := make([]byte, tlsRecordHeader)
	if _, err := io.ReadFull(server, hdr); err != nil {
		tb.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(server, body); err != nil {
		tb.Fatal(err)
	}
	buf.Write(hdr)
	buf.Write(body)
	server.Close()
	<-done
	return buf.Bytes()
}

// refragment re-splits the handshake bytes of a one-record hello into
// records of at most n bytes each, as a TLS stack is allowed to.
func refragment(hello []byte, n int) []byte {
	msg := hello[tlsRecordHeader:]
	var out []byte
	for len(msg) > 0 {
		k := min(n, len(msg))
		out = append(out, 0x16, 3, 1, byte(k>>8), byte(k))
		out = append(out, msg[:k]...)
		msg = msg[k:]
	}
	return out
}

func TestPeekClientHello(t *testing.T) {
	withSNI := recordHello(t, &tls.Config{ServerName: "api.example.com", NextProtos: []string{"h2", "http/1.1"}})
	noSNI := recordHello(t, &tls.Config{InsecureSkipVerify: true})
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
		{name: "split over records", wire: refragment(withSNI, 50), sni: "api.example.com", alpn: []string{"h2", "http/1.1"}},
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
			h, br2, err := peekClientHello(br)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parsed %+v, want an error", h)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.serverName != tt.sni || !slices.Equal(h.alpn, tt.alpn) || h.size != len(tt.wire) {
				t.Errorf("got sni %q alpn %q size %d, want %q %q %d", h.serverName, h.alpn, h.size, tt.sni, tt.alpn, len(tt.wire))
			}
			// Nothing was consumed: the upstream gets every byte, in order.
			rest, err := io.ReadAll(br2)
			if err != nil || !bytes.Equal(rest, tt.wire) {
				t.Errorf("reader replays %d bytes (err %v), want the %d of the hello", len(rest), err, len(tt.wire))
			}
		})
	}
}

func TestPeekClientHelloRejectsBadNames(t *testing.T) {
	hello := recordHello(t, &tls.Config{ServerName: "api.example.com"})
	for _, bad := range []string{"api.example.co\x00", "api..xample.com", "api.example.co.", "api.exa/ple.com"} {
		wire := bytes.Replace(hello, []byte("api.example.com"), []byte(bad), 1)
		if _, _, err := peekClientHello(bufio.NewReader(bytes.NewReader(wire))); !errors.Is(err, errNotClientHello) {
			t.Errorf("sni %q: err %v, want errNotClientHello", bad, err)
		}
	}
}

// FuzzClientHello feeds arbitrary bytes to the parser: it must never panic,
// never consume, and agree with crypto/tls on the server name of every hello
// both accept. (Rejecting what crypto/tls would accept only denies.)
func FuzzClientHello(f *testing.F) {
	f.Add(recordHello(f, &tls.Config{ServerName: "api.example.com", NextProtos: []string{"h2"}}))
	f.Add(recordHello(f, &tls.Config{InsecureSkipVerify: true}))
	f.Add(refragment(recordHello(f, &tls.Config{ServerName: "a.b"}), 7))
	f.Add([]byte{0x16, 3, 1, 0, 4, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, wire []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(wire), 64)
		h, br2, err := peekClientHello(br)
		rest, _ := io.ReadAll(br2)
		if !bytes.Equal(rest, wire) {
			t.Fatalf("peek consumed bytes: replays %d of %d", len(rest), len(wire))
		}
		if err != nil {
			return
		}
		if h.size > len(wire) || (h.serverName != "" && !validSNI([]byte(h.serverName))) {
			t.Fatalf("bad result %+v for %d bytes", h, len(wire))
		}
		if want, ok := tlsServerName(wire); ok && want != h.serverName {
			t.Fatalf("sni %q, crypto/tls says %q", h.serverName, want)
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
