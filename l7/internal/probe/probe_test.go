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
