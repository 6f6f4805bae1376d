package handover

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Offer is what a serving agent hands over, and how it checks who asks.
type Offer struct {
	Proxy     *os.File // the proxy's listening socket (the caller keeps its own descriptor)
	Admin     *os.File // the admin listening socket; nil: none is handed over
	AdminAddr string   // the address Admin listens on, as configured (--admin)
	// Verify checks the token a successor sent; nil: it may take over.
	// Required.
	Verify func(token *os.File) error
	Logger *slog.Logger // nil: discard
}

// Event is what a successor did.
type Event int

const (
	// Offered: a verified successor holds the sockets and is taking over;
	// keep serving until HandedOver or Failed.
	Offered Event = iota
	// Failed: the successor went away before it was ready; keep serving.
	Failed
	// HandedOver: the successor serves on the sockets; stop accepting on
	// them and drain. The Server no longer listens.
	HandedOver
)

func (e Event) String() string {
	return [...]string{"offered", "failed", "handed over"}[e]
}

// Timeouts of the serving side: for a successor's hello, and for its
// take-over (loading and attaching the programs) once offered the sockets.
const (
	helloTimeout    = 10 * time.Second
	takeoverTimeout = 2 * time.Minute
)

// Server waits for successors under a Name, one at a time.
type Server struct {
	ln     *net.UnixListener
	offer  Offer
	log    *slog.Logger
	events chan Event
	// offering: a successor has been (or is being) sent the sockets and
	// has not failed. Set before the offer leaves, so that whoever learns
	// that a successor holds the sockets finds it set (Offering), which
	// the buffered Offered event cannot promise.
	offering atomic.Bool
	stop     chan struct{}
	done     chan struct{}
	once     sync.Once
}

// Listen starts waiting for successors under name with o.
func Listen(name string, o Offer) (*Server, error) {
	if o.Verify == nil || o.Proxy == nil {
		return nil, errors.New("handover: Offer needs Proxy and Verify")
	}
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: name, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("handover: listen: %w", err)
	}
	s := &Server{ln: ln, offer: o, log: o.Logger, events: make(chan Event, 16),
		stop: make(chan struct{}), done: make(chan struct{})}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	go s.loop()
	return s, nil
}

// Offering reports whether a successor holds (or is being sent) the
// listening sockets and has not failed (it stays true once the hand-over
// is done): an agent told to stop then waits for its HandedOver or Failed
// event instead of draining on its own. It is true before the successor can know it has the
// sockets, while Offered may still be on its way.
func (s *Server) Offering() bool { return s.offering.Load() }

// Events reports what successors did, in order.
func (s *Server) Events() <-chan Event { return s.events }

// Close stops waiting for successors (one being served is cut: it fails
// and the caller keeps serving). It may be called more than once.
func (s *Server) Close() error {
	s.once.Do(func() { close(s.stop); s.ln.Close() })
	<-s.done
	return nil
}

func (s *Server) loop() {
	defer close(s.done)
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			return // closed
		}
		handedOver := s.serve(c)
		c.Close()
		if handedOver {
			return
		}
	}
}

func (s *Server) emit(e Event) {
	select {
	case s.events <- e:
	case <-s.stop:
	}
}

// serve runs the protocol with one successor; true: it took over.
func (s *Server) serve(c *net.UnixConn) bool {
	c.SetDeadline(time.Now().Add(helloTimeout))
	m, files, err := receive(c)
	if err != nil {
		s.log.Warn("hand-over: no hello from a successor", "err", err)
		return false
	}
	err = s.check(m, files)
	closeAll(files)
	if err != nil {
		s.log.Warn("hand-over: successor refused", "err", err)
		_ = send(c, message{Type: msgRefused, Error: err.Error()})
		return false
	}
	offer := message{Type: msgOffer, Version: version, Admin: s.offer.AdminAddr}
	fds := []*os.File{s.offer.Proxy}
	if s.offer.Admin != nil {
		offer.HasAdmin = true
		fds = append(fds, s.offer.Admin)
	}
	s.offering.Store(true)
	if err := send(c, offer, fds...); err != nil {
		s.log.Warn("hand-over: offer not sent", "err", err)
		s.offering.Store(false)
		s.emit(Failed) // an agent stopping may wait for this successor (Offering)
		return false
	}
	s.log.Info("hand-over: a successor holds the listening sockets, taking over; still serving")
	s.emit(Offered)
	c.SetDeadline(time.Now().Add(takeoverTimeout))
	m, files, err = receive(c)
	closeAll(files)
	if err == nil && m.Type != msgReady {
		err = fmt.Errorf("handover: got %q, want %q", m.Type, msgReady)
	}
	if err != nil {
		s.log.Warn("hand-over: the successor failed before it was ready; still serving", "err", err)
		s.offering.Store(false)
		s.emit(Failed)
		return false
	}
	s.ln.Close() // the successor listens under the name from now on
	if err := send(c, message{Type: msgDone}); err != nil {
		s.log.Warn("hand-over: done not sent (the successor goes on)", "err", err)
	}
	s.emit(HandedOver)
	return true
}

func (s *Server) check(m message, files []*os.File) error {
	switch {
	case m.Type != msgHello:
		return fmt.Errorf("handover: got %q, want %q", m.Type, msgHello)
	case m.Version != version:
		return fmt.Errorf("handover: protocol version %d, want %d", m.Version, version)
	case len(files) != 1:
		return fmt.Errorf("handover: hello carries %d descriptors, want 1 token", len(files))
	}
	return s.offer.Verify(files[0])
}
