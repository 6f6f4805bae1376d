package e2e

import (
	"net/netip"
	"testing"

	"github.com/egressd/egressd/internal/kerneltest"
)

// tlsAt is curl doing its own TLS to https://name:port/, trusting the test
// CA only, connected to addr: egressd sees a ClientHello and decides by its
// server name (SNI) and the port, without decrypting.
func tlsAt(w *world, name string, port int, addr netip.Addr) []string {
	return []string{"--cacert", w.caFile, "--resolve", name + ":" + itoa(port) + ":" + bracket(addr),
		"https://" + name + ":" + itoa(port) + "/"}
}

// testPassthrough sends TLS from ns (nil: the host): to an allowed name the
// upstream answers over the client's own TLS session; to a denied name
// (which the upstream's certificate covers too, so only egressd stops it)
// the connection is closed and the upstream sees nothing.
func testPassthrough(t *testing.T, w *world, ns *kerneltest.NS) {
	t.Run("allowed", func(t *testing.T) {
		r := curl(t, w, ns, tlsAt(w, "tls.whitelisted.test", portTLS, decoy4)...)
		if r.code != 200 {
			t.Fatalf("status %d, want 200\n%s%s", r.code, r.body, r.err)
		}
		// egressd dialed the name it resolved, not the decoy the app chose.
		if l := r.field("local"); r.field("tls") != "true" || r.field("sni") != "tls.whitelisted.test" || l != real4.String() && l != real6.String() {
			t.Errorf("upstream saw tls %q, sni %q at %s; want true, tls.whitelisted.test at the resolved %v or %v\n%s",
				r.field("tls"), r.field("sni"), l, real4, real6, r.body)
		}
	})
	t.Run("denied", func(t *testing.T) {
		before := requestsSeen(w)
		r := curl(t, w, ns, tlsAt(w, "other.whitelisted.test", portTLS, decoy4)...)
		if r.code != 0 || r.err == "" {
			t.Fatalf("status %d, want the connection closed before any response\n%s%s", r.code, r.body, r.err)
		}
		if n := requestsSeen(w) - before; n != 0 {
			t.Errorf("the upstream received %d request(s) for a denied name", n)
		}
	})
}

// requestsSeen is how many requests the upstreams received, on any address.
func requestsSeen(w *world) int {
	n := 0
	for _, a := range []netip.Addr{decoy4, decoy6, real4, real6} {
		n += w.rec.Count(a)
	}
	return n
}
