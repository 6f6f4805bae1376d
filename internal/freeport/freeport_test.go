package freeport

import (
	"net"
	"strconv"
	"testing"
)

// TestReserved: while reserved, the port is refused to another reservation
// and to a client, and a server (Go's listener: SO_REUSEADDR) binds it.
func TestReserved(t *testing.T) {
	port := TCP(t)
	if _, ok := reserve(port); ok {
		t.Fatalf("port %d reserved twice", port)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatalf("dial %s before the server listens: connected", addr)
	}
	for _, a := range []string{addr, net.JoinHostPort("", strconv.Itoa(port))} {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatalf("server on the reserved port: %v", err)
		}
		go func() {
			if c, err := ln.Accept(); err == nil {
				c.Close()
			}
		}()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		c.Close()
		ln.Close()
	}
}
