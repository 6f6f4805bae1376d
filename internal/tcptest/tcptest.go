// Package tcptest gives tests both ends of a real loopback TCP connection,
// closed when the test ends (for the socket-level code: splicing, peeking,
// zero-copy pipes, which a net.Pipe cannot stand in for).
package tcptest

import (
	"net"
	"testing"
)

// Pair returns both ends of a loopback TCP connection: a dialled, b
// accepted.
func Pair(t testing.TB) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}
