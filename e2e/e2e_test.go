package e2e

import (
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/kerneltest"
)

// at is curl's --resolve for name:port to addr: curl sends Host: name and
// connects to addr, where the BPF hook takes over.
func at(name string, port int, addr netip.Addr) []string {
	return []string{"--resolve", name + ":" + itoa(port) + ":" + bracket(addr), "http://" + name + ":" + itoa(port) + "/"}
}

func bracket(a netip.Addr) string {
	if a.Is6() {
		return "[" + a.String() + "]"
	}
	return a.String()
}

// assertNoBypass fails if any request reached an upstream on a decoy
// address: only a connection that went around egressd lands there.
func assertNoBypass(t *testing.T, w *world) {
	t.Helper()
	for _, d := range []netip.Addr{decoy4, decoy6} {
		if n := w.rec.Count(d); n != 0 {
			t.Errorf("%d request(s) reached the upstream at %v without egressd", n, d)
		}
	}
}

// waitStatus polls (at most 10 s, scaled) until a request gets the status code.
func waitStatus(t *testing.T, w *world, args []string, code int) {
	t.Helper()
	var last response
	waitFor(t, "status "+itoa(code), func() bool {
		last = curl(t, w, nil, args...)
		return last.code == code
	})
	_ = last
}

// waitFor polls cond every 50 ms for at most 10 s (scaled by
// EGRESSD_TEST_SLOWDOWN).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(kerneltest.Scale(10 * time.Second))
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// metric returns the value of the sample named exactly (with its labels in
// the exposition's order), or -1.
func metric(exposition, sample string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`)
	m := re.FindStringSubmatch(exposition)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return -1
	}
	return v
}

func grep(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
