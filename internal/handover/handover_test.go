package handover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// testName is a Name no other test process uses.
func testName(t *testing.T) string {
	return fmt.Sprintf("@egressd-handover-test-%d-%s", os.Getpid(), t.Name())
}

// fixture is a serving agent: a TCP listener offered under a name, and the
// file whose descriptor is the right token.
type fixture struct {
	ln    *net.TCPListener
	token string
	srv   *Server
}

func newFixture(t *testing.T, log ...*slog.Logger) *fixture {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	f := &fixture{ln: ln, token: filepath.Join(t.TempDir(), "token")}
	if err := os.WriteFile(f.token, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	lf, err := ln.File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lf.Close() })
	o := Offer{Proxy: lf, AdminAddr: "127.0.0.1:1", Verify: f.verify}
	if len(log) > 0 {
		o.Logger = log[0]
	}
	f.srv, err = Listen(testName(t), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.srv.Close() })
	return f
}

// verify accepts a descriptor of the token file only.
func (f *fixture) verify(tok *os.File) error {
	var want, got unix.Stat_t
	if err := unix.Stat(f.token, &want); err != nil {
		return err
	}
	if err := unix.Fstat(int(tok.Fd()), &got); err != nil {
		return err
	}
	if got.Ino != want.Ino || got.Dev != want.Dev {
		return errors.New("not the token")
	}
	return nil
}

func open(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func wantEvent(t *testing.T, s *Server, want Event) {
	t.Helper()
	select {
	case e := <-s.Events():
		if e != want {
			t.Fatalf("event %v, want %v", e, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no event, want %v", want)
	}
}

func TestNoAgent(t *testing.T) {
	_, err := Acquire(testName(t), open(t, os.Args[0]), time.Second)
	if !errors.Is(err, ErrNoAgent) {
		t.Fatalf("Acquire = %v, want ErrNoAgent", err)
	}
}

// TestHandOver: the successor gets the very socket (a connection made to
// the serving agent's address is accepted through the granted descriptor),
// and after Ready the name is free for the successor's own Server.
func TestHandOver(t *testing.T) {
	f := newFixture(t)
	g, err := Acquire(testName(t), open(t, f.token), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	// The successor holds the sockets: the serving agent must already know
	// it, whether or not it has read Offered yet (a SIGTERM now waits).
	if !f.srv.Offering() {
		t.Error("Offering is false while the successor holds the sockets")
	}
	wantEvent(t, f.srv, Offered)
	if g.Admin != nil || g.AdminAddr != "127.0.0.1:1" {
		t.Errorf("admin %v %q, want none and the address", g.Admin, g.AdminAddr)
	}
	ln, err := net.FileListener(g.Proxy)
	g.Proxy.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", f.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ac, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	ac.Close()
	if err := g.Ready(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	wantEvent(t, f.srv, HandedOver)
	next, err := Listen(testName(t), Offer{Proxy: g.Proxy, Verify: f.verify})
	if err != nil {
		t.Fatalf("the successor cannot listen under the name: %v", err)
	}
	next.Close()
}

// TestRefusedAndFailed: a wrong token is refused, a successor that goes
// away before Ready is reported Failed; the agent keeps waiting and the
// next successor gets the sockets.
func TestRefusedAndFailed(t *testing.T) {
	f := newFixture(t)
	_, err := Acquire(testName(t), open(t, os.Args[0]), 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "not the token") {
		t.Fatalf("Acquire with a wrong token = %v, want refused", err)
	}
	g, err := Acquire(testName(t), open(t, f.token), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	wantEvent(t, f.srv, Offered)
	g.Proxy.Close()
	g.Close()
	wantEvent(t, f.srv, Failed)
	if f.srv.Offering() {
		t.Error("Offering is still true after the successor failed")
	}
	g, err = Acquire(testName(t), open(t, f.token), 5*time.Second)
	if err != nil {
		t.Fatalf("the next successor: %v", err)
	}
	defer g.Close()
	g.Proxy.Close()
	wantEvent(t, f.srv, Offered)
}

// TestOfferingBeforeTheSuccessorKnows: by the time a successor holds the
// sockets, Offering is true, even while the serving side has not yet gone
// on from sending them (held here in its log line, written between the
// offer and the Offered event). An agent told to stop in that window waits
// for the successor instead of draining on its own.
func TestOfferingBeforeTheSuccessorKnows(t *testing.T) {
	held, release := make(chan struct{}), make(chan struct{})
	f := newFixture(t, slog.New(&holdHandler{msg: "hand-over: a successor holds", held: held, release: release}))
	defer close(release)
	g, err := Acquire(testName(t), open(t, f.token), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	<-held
	if !f.srv.Offering() {
		t.Fatal("Offering is false while the successor holds the sockets")
	}
	select {
	case e := <-f.srv.Events():
		t.Fatalf("event %v before the serving side went on", e)
	default:
	}
}

// holdHandler blocks the log call whose message starts with msg until
// release is closed, after closing held.
type holdHandler struct {
	msg           string
	held, release chan struct{}
	once          sync.Once
}

func (h *holdHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *holdHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *holdHandler) WithGroup(string) slog.Handler            { return h }
func (h *holdHandler) Handle(_ context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, h.msg) {
		h.once.Do(func() { close(h.held) })
		<-h.release
	}
	return nil
}
