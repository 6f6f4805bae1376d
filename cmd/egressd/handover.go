package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/egressd/egressd/internal/handover"
	"github.com/egressd/egressd/redirect"
)

// The hand-over between an old and a new `egressd run` on one proxy port
// (internal/handover has the protocol and why one shared socket rather
// than SO_REUSEPORT). In order:
//
//  1. The new agent checks its rules and flags (invalid: exit 1, the old
//     agent never hears of it), then asks the agent waiting under
//     handover.Name(port) for its sockets, with the pinned
//     original-destination map as its token. Nobody waiting: it binds the
//     proxy port itself (a port still held while nobody waits — an agent
//     starting or handing over — is asked again, for up to
//     acquireTimeout).
//  2. Given the proxy socket (and the admin socket when --admin is the
//     same), it attaches — takes the pins and programs over — and serves
//     on that socket next to the old agent. Both accept from one queue;
//     each looks up the connections it accepted in the shared map.
//  3. Ready, it serves the admin socket and tells the old agent, which
//     stops accepting and serving admin requests, drains, and then waits
//     for SIGTERM (an exited container would be restarted and take the
//     port back). The new agent waits for its own successor.
//
// If the new agent fails before step 3 it closes the conversation and the
// old one carries on unchanged. SIGTERM to the old agent while a successor
// is taking over waits (up to --shutdown-timeout) for it to be ready.

// acquireTimeout bounds how long a new agent waits for a held proxy port
// to be handed over.
const acquireTimeout = 30 * time.Second

// listeners are the agent's listening sockets and, if the previous agent
// handed them over, the conversation to tell it when to stop.
type listeners struct {
	proxy net.Listener
	admin net.Listener    // handed over; nil: bind --admin (startAdmin)
	grant *handover.Grant // nil: none
}

// acquireListeners gets the proxy socket (and the admin one) from the
// agent serving the port, or binds it when none does.
func acquireListeners(cfg *runConfig, log *slog.Logger) (*listeners, error) {
	name := handover.Name(cfg.ProxyPort)
	deadline := time.Now().Add(acquireTimeout)
	for {
		g, err := acquire(name, cfg.PinDir)
		switch {
		case err == nil:
			return granted(g, cfg, log)
		case errors.Is(err, handover.ErrNoAgent):
			ln, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(int(cfg.ProxyPort)))) // dual stack
			if err == nil {
				return &listeners{proxy: ln}, nil
			}
			if !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
				return nil, fmt.Errorf("proxy: %w (and no egressd agent on this port handed it over)", err)
			}
		case !errors.Is(err, handover.ErrBusy):
			return nil, fmt.Errorf("proxy: port %d: %w", cfg.ProxyPort, err)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("proxy: port %d: %w", cfg.ProxyPort, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// acquire asks the agent waiting under name; without pins to prove
// anything (a first start) it is as if none waited.
func acquire(name, pinDir string) (*handover.Grant, error) {
	token, err := redirect.HandoverToken(pinDir)
	if err != nil {
		return nil, handover.ErrNoAgent
	}
	defer token.Close()
	return handover.Acquire(name, token, 10*time.Second)
}

// granted turns a grant into listeners; the admin socket is used only for
// the same --admin.
func granted(g *handover.Grant, cfg *runConfig, log *slog.Logger) (*listeners, error) {
	l := &listeners{grant: g}
	ln, err := net.FileListener(g.Proxy)
	g.Proxy.Close()
	if err != nil {
		g.Close()
		return nil, fmt.Errorf("proxy: handed-over socket: %w", err)
	}
	l.proxy = ln
	if g.Admin != nil {
		if g.AdminAddr == cfg.Admin {
			l.admin, err = net.FileListener(g.Admin)
		}
		g.Admin.Close()
		if err != nil {
			l.close()
			return nil, fmt.Errorf("admin: handed-over socket: %w", err)
		}
	}
	log.Info("hand-over: got the listening sockets of the agent serving this port; it serves until this one is ready",
		"proxy", ln.Addr().String(), "admin_handed_over", l.admin != nil)
	return l, nil
}

// close closes the listeners and, before ready, ends the conversation
// (the previous agent carries on).
func (l *listeners) close() {
	if l.grant != nil {
		l.grant.Close()
	}
	if l.admin != nil {
		l.admin.Close()
	}
	l.proxy.Close()
}

// succession is the serving agent's side: it waits for a successor.
type succession struct {
	srv       *handover.Server // nil: not waiting (see startSuccession)
	files     []*os.File
	stopAdmin func() // at hand-over: the successor answers the admin socket
}

// startSuccession tells the previous agent (if any) that this one is
// ready, then waits for a successor under the port's name. A failure to
// wait is logged: this agent serves, but the next one cannot take over.
func startSuccession(cfg *runConfig, l *listeners, admin net.Listener, red *redirect.Redirector, log *slog.Logger) *succession {
	if l.grant != nil {
		if err := l.grant.Ready(5 * time.Second); err != nil {
			log.Warn("hand-over: the previous agent did not confirm; it may still be accepting", "err", err)
		}
		l.grant.Close()
		l.grant = nil
		log.Info("hand-over: took over from the previous agent, which stops accepting and drains")
	}
	s := &succession{}
	pf, err := l.proxy.(*net.TCPListener).File()
	if err != nil {
		log.Warn("hand-over: no successor can take over", "err", err)
		return s
	}
	o := handover.Offer{Proxy: pf, AdminAddr: cfg.Admin, Verify: red.CheckHandoverToken, Logger: log}
	s.files = append(s.files, pf)
	if tl, ok := admin.(*net.TCPListener); ok {
		if af, err := tl.File(); err == nil {
			o.Admin = af
			s.files = append(s.files, af)
		}
	}
	s.srv, err = handover.Listen(handover.Name(cfg.ProxyPort), o)
	if err != nil {
		log.Warn("hand-over: no successor can take over", "err", err)
	}
	return s
}

// events reports what successors did; nil (blocks) when not waiting.
func (s *succession) events() <-chan handover.Event {
	if s == nil || s.srv == nil {
		return nil
	}
	return s.srv.Events()
}

// offering reports whether a successor holds the sockets and is taking
// over (handover.Server.Offering), even before its Offered event arrives.
func (s *succession) offering() bool { return s != nil && s.srv != nil && s.srv.Offering() }

// await waits up to timeout for the successor under way to be ready or fail.
func (s *succession) await(timeout time.Duration) handover.Event {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case e := <-s.events():
			if e != handover.Offered {
				return e
			}
		case <-t.C:
			return handover.Failed
		}
	}
}

// close stops waiting for successors.
func (s *succession) close() {
	if s == nil {
		return
	}
	if s.srv != nil {
		s.srv.Close()
	}
	for _, f := range s.files {
		f.Close()
	}
}
