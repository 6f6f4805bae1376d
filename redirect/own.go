package redirect

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// Control registers the socket as one of egressd's own, which the programs
// let connect wherever it is going, once: use it as the net.Dialer Control
// (l7.Config.Control) of every socket the agent connects itself, upstream
// and resolver alike. Only sockets registered here are exempt; a socket
// mark, which a pod with CAP_NET_RAW can set, exempts nothing.
//
// The programs remove the registration when the socket connects; one that
// never does (the dial failed first) is forgotten by the map's LRU.
func (r *Redirector) Control(_, _ string, c syscall.RawConn) error {
	var cookie uint64
	var serr error
	if err := c.Control(func(fd uintptr) {
		cookie, serr = unix.GetsockoptUint64(int(fd), unix.SOL_SOCKET, unix.SO_COOKIE)
	}); err != nil {
		return fmt.Errorf("redirect: own socket: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("redirect: own socket: SO_COOKIE: %w", serr)
	}
	if err := r.objs.OwnSocks.Put(cookie, uint8(1)); err != nil {
		return fmt.Errorf("redirect: own socket: register: %w", err)
	}
	return nil
}
