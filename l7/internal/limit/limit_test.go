package limit

import (
	"log/slog"
	"net/netip"
	"testing"
	"time"
)

// TestCounts: the global and per-client bounds, the zero key counted for
// no client, releases making room again, streams counted apart.
func TestCounts(t *testing.T) {
	l := New(3, 2, 1, slog.New(slog.DiscardHandler))
	now := time.Now()
	a := Key{Addr: netip.MustParseAddr("198.19.32.1")}
	b := Key{Cgroup: 7}
	for i, want := range []string{"", "", ShedPerClient} {
		if got := l.Admit(a, now); got != want {
			t.Fatalf("admit a #%d = %q, want %q", i, got, want)
		}
	}
	if got := l.Admit(Key{}, now); got != "" {
		t.Fatalf("admit zero key = %q", got)
	}
	if got := l.Admit(b, now); got != ShedMaxConns {
		t.Fatalf("admit b over max conns = %q", got)
	}
	l.Release(a)
	if got := l.Admit(b, now); got != "" {
		t.Fatalf("admit b after a release = %q", got)
	}
	if got := l.AdmitStream(a, now); got != "" {
		t.Fatalf("stream of a = %q", got)
	}
	if got := l.AdmitStream(a, now); got != RefusedStreamsPerClient {
		t.Fatalf("second stream of a = %q", got)
	}
	if got := l.AdmitStream(Key{}, now); got != "" {
		t.Fatalf("stream of the zero key = %q", got)
	}
	if n := l.StreamClients(); n != 1 {
		t.Fatalf("stream clients = %d, want 1", n)
	}
	l.ReleaseStream(a)
	if n := l.StreamClients(); n != 0 {
		t.Fatalf("stream clients after release = %d, want 0", n)
	}
}
