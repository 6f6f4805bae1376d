// Package freeport picks TCP ports for servers that tests start as separate
// processes (egressd, Squid), which bind them only later. Ports come from
// below the kernel's ephemeral range, so the outgoing connections of tests
// running in parallel can't take them in between; two tests may still draw
// the same port (1 in 12,000), so a server that fails to bind is an error
// worth a clear message, not a retry loop.
package freeport

import (
	"math/rand/v2"
	"net"
	"strconv"
	"testing"
)

// TCP returns a TCP port that was free on every address a moment ago,
// for a server the test starts as another process (egressd, Squid), which
// binds it later. It is drawn from below the kernel's ephemeral range
// (32768 and up by default): a port from there can be taken by an outgoing
// connection of any test running in parallel before the server binds it.
func TCP(t testing.TB) int {
	t.Helper()
	for range 200 {
		port := 20000 + rand.IntN(12000)
		ln, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		ln.Close()
		return port
	}
	t.Fatal("freeport: no free TCP port in 20000-31999")
	return 0
}
