package probe

import (
	"testing"
	"time"

	"github.com/egressd/egressd/internal/tcptest"
)

// waitPeek polls s until it reports want (bytes take a moment to arrive).
func waitPeek(t *testing.T, s *Socket, want Peeked) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.Peek() != want {
		if time.Now().After(deadline) {
			t.Fatalf("Peek = %v, want %v", s.Peek(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSocketPeek: nothing on a quiet socket, data once the peer wrote
// (still unread: a second look sees it too), closed once the peer closed.
func TestSocketPeek(t *testing.T) {
	a, b := tcptest.Pair(t)
	s := NewSocket(a)
	if got := s.Peek(); got != Nothing {
		t.Fatalf("quiet socket: %v", got)
	}
	b.Write([]byte("x"))
	waitPeek(t, s, Data)
	if got := s.Peek(); got != Data {
		t.Fatalf("second look: %v (the peek consumed the byte?)", got)
	}
	var buf [1]byte
	if _, err := a.Read(buf[:]); err != nil {
		t.Fatal(err)
	}
	b.Close()
	waitPeek(t, s, Closed)
}

// TestSocketWait: Wait returns once bytes are there — also bytes that came
// before it began, whose readiness the poller has already reported (a wait
// that trusted the poller alone would sit until its deadline) — leaves
// them unread, gives the deadline's error on a quiet socket, and returns
// at the peer's end of stream.
func TestSocketWait(t *testing.T) {
	a, b := tcptest.Pair(t)
	s := NewSocket(a)
	if !s.CanWait() {
		t.Fatal("a TCP socket: CanWait false")
	}
	a.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if err := s.Wait(); !isTimeout(err) {
		t.Fatalf("quiet socket: Wait = %v, want the deadline's error", err)
	}
	a.SetReadDeadline(time.Now().Add(10 * time.Second))
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	b.Write([]byte("x"))
	if err := <-done; err != nil {
		t.Fatalf("bytes written while waiting: Wait = %v", err)
	}
	waitPeek(t, s, Data)
	// The byte is still there, its readiness consumed by the wait above:
	// a second Wait must see it at once.
	if err := s.Wait(); err != nil {
		t.Fatalf("bytes already there: Wait = %v", err)
	}
	var buf [1]byte
	if n, err := a.Read(buf[:]); n != 1 || buf[0] != 'x' || err != nil {
		t.Fatalf("read after the waits: %d %q %v (Wait consumed the byte?)", n, buf[:n], err)
	}
	b.Write([]byte("y"))
	waitPeek(t, s, Data) // arrived and reported by the poller before the next Wait
	if err := s.Wait(); err != nil {
		t.Fatalf("bytes that came before the wait: Wait = %v", err)
	}
	a.Read(buf[:])
	b.Close()
	if err := s.Wait(); err != nil {
		t.Fatalf("peer closed: Wait = %v, want nil (the read that follows sees the end)", err)
	}
	if got := s.Peek(); got != Closed {
		t.Fatalf("after the peer closed: %v", got)
	}
}
