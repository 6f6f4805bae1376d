package upstream

import (
	"net"
	"sync/atomic"
)

// CountAccepts accepts on ln until it is closed, closing each connection
// at once, and counts them: a service that must see nothing (a node port
// a pod must not reach) says so by a count of 0.
func CountAccepts(ln net.Listener) *atomic.Int64 {
	var n atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	return &n
}
