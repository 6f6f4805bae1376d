// Package freeport picks TCP ports for servers that tests start as separate
// processes (egressd, Squid), which bind them only later, and keeps each
// port reserved until the test ends, so that nothing else takes it in
// between.
//
// The reservation is a socket bound to the port on every address (IPv6
// dual-stack, else IPv4) that never listens: it was bound without
// SO_REUSEADDR, so the bind succeeded only if no socket held the port
// (another test's reservation or server included, in any process), and
// SO_REUSEADDR was set on it afterwards, so that the server's own bind —
// Go's listeners and Squid's set SO_REUSEADDR — succeeds next to it (Linux
// lets two SO_REUSEADDR sockets share a port while neither listens). A
// client connecting before the server listens is refused, as on a free
// port. Ports still come from below the kernel's ephemeral range (32768 and
// up by default), which the kernel's ephemeral choice does not cover
// either way. It replaces pick-then-bind (close the probe, hope nothing
// takes the port before the server binds it), which raced with parallel
// tests.
package freeport

import (
	"math/rand/v2"
	"testing"

	"golang.org/x/sys/unix"
)

// TCP returns a TCP port reserved for the rest of the test (see the package
// doc), for a server the test starts as another process, which binds it
// later; or a port where nothing listens.
func TCP(t testing.TB) int {
	t.Helper()
	for range 200 {
		port := 20000 + rand.IntN(12000)
		if fd, ok := reserve(port); ok {
			t.Cleanup(func() { unix.Close(fd) })
			return port
		}
	}
	t.Fatal("freeport: no free TCP port in 20000-31999")
	return 0
}

// reserve binds a socket to port on every address, exclusively, then lets
// SO_REUSEADDR binds share it.
func reserve(port int) (int, bool) {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	var sa unix.Sockaddr = &unix.SockaddrInet6{Port: port}
	if err == nil {
		err = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0)
	}
	if err != nil { // no IPv6: the IPv4 wildcard
		if fd >= 0 {
			unix.Close(fd)
		}
		if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return -1, false
		}
		sa = &unix.SockaddrInet4{Port: port}
	}
	if unix.Bind(fd, sa) != nil || unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1) != nil {
		unix.Close(fd)
		return -1, false
	}
	return fd, true
}
