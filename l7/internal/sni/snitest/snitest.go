// Package snitest records real ClientHellos from crypto/tls for the tests of
// sni and of the proxy's TLS passthrough.
package snitest

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"testing"
)

// recordHeader is a TLS record header's length.
const recordHeader = 5

// Record captures the ClientHello crypto/tls sends for cfg: the exact bytes
// of its TLS records, as a passthrough client would put on the wire.
func Record(tb testing.TB, cfg *tls.Config) []byte {
	tb.Helper()
	client, server := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = tls.Client(client, cfg).Handshake() // fails once server closes
	}()
	var buf bytes.Buffer
	hdr := make([]byte, recordHeader)
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

// Refragment re-splits the handshake bytes of a one-record hello into
// records of at most n bytes each, as a TLS stack is allowed to.
func Refragment(hello []byte, n int) []byte {
	msg := hello[recordHeader:]
	var out []byte
	for len(msg) > 0 {
		k := min(n, len(msg))
		out = append(out, 0x16, 3, 1, byte(k>>8), byte(k))
		out = append(out, msg[:k]...)
		msg = msg[k:]
	}
	return out
}
