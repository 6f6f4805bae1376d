package handover

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNoAgent: no agent waits for successors under the name (none runs, or
// it is starting or handing over to another).
var ErrNoAgent = errors.New("handover: no agent waits for a successor")

// ErrBusy: the agent closed the conversation before offering its sockets
// (it was handing over to another successor): ask again.
var ErrBusy = errors.New("handover: the agent went away before offering its sockets")

// Grant is what a successor received: the serving agent's listening
// sockets, and the conversation to tell it when to stop accepting.
type Grant struct {
	Proxy     *os.File
	Admin     *os.File // nil: none offered
	AdminAddr string   // the serving agent's admin address
	c         *net.UnixConn
}

// Acquire asks the agent waiting under name for its sockets, proving
// itself with token (sent, not consumed), waiting at most timeout.
func Acquire(name string, token *os.File, timeout time.Duration) (*Grant, error) {
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: name, Net: "unixpacket"})
	if errors.Is(err, unix.ECONNREFUSED) || errors.Is(err, unix.ENOENT) {
		return nil, ErrNoAgent
	}
	if err != nil {
		return nil, fmt.Errorf("handover: %w", err)
	}
	g, err := ask(c, token, timeout)
	if err != nil {
		c.Close()
		return nil, err
	}
	return g, nil
}

func ask(c *net.UnixConn, token *os.File, timeout time.Duration) (*Grant, error) {
	c.SetDeadline(time.Now().Add(timeout))
	if err := send(c, message{Type: msgHello, Version: version}, token); err != nil {
		return nil, err
	}
	m, files, err := receive(c)
	if errors.Is(err, errClosed) {
		return nil, ErrBusy
	}
	if err != nil {
		return nil, err
	}
	if m.Type == msgRefused {
		closeAll(files)
		return nil, fmt.Errorf("handover: refused by the serving agent: %s", m.Error)
	}
	want := 1
	if m.HasAdmin {
		want = 2
	}
	if m.Type != msgOffer || len(files) != want {
		closeAll(files)
		return nil, fmt.Errorf("handover: got %q with %d descriptors, want an offer with %d", m.Type, len(files), want)
	}
	c.SetDeadline(time.Time{})
	g := &Grant{Proxy: files[0], AdminAddr: m.Admin, c: c}
	if m.HasAdmin {
		g.Admin = files[1]
	}
	return g, nil
}

// Ready tells the serving agent that this one serves: it stops accepting
// and drains. It waits (at most timeout) for the agent to stop waiting for
// successors, so the caller may listen under the name next; an agent gone
// meanwhile is no error.
func (g *Grant) Ready(timeout time.Duration) error {
	g.c.SetDeadline(time.Now().Add(timeout))
	if err := send(g.c, message{Type: msgReady}); err != nil {
		return err
	}
	m, files, err := receive(g.c)
	closeAll(files)
	if errors.Is(err, errClosed) {
		return nil
	}
	if err != nil {
		return err
	}
	if m.Type != msgDone {
		return fmt.Errorf("handover: got %q, want %q", m.Type, msgDone)
	}
	return nil
}

// Close ends the conversation: before Ready, the serving agent keeps
// serving as if nothing had happened. The descriptors are the caller's.
func (g *Grant) Close() error { return g.c.Close() }
