package gateway

import (
	"bufio"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/egressd/egressd/l7/internal/h1"
)

func TestAuthorityPort(t *testing.T) {
	for _, tc := range []struct {
		in   string
		port uint16
		ok   bool
	}{
		{"a.test", 0, true}, {"a.test:8080", 8080, true}, {"[::1]", 0, true}, {"[::1]:443", 443, true},
		{"a.test:", 0, false}, {"a.test:0", 0, false}, {"a.test:65536", 0, false}, {"a.test:x1", 0, false},
		{"::1:80", 0, false}, {"", 0, true},
	} {
		port, ok := AuthorityPort([]byte(tc.in))
		if port != tc.port || ok != tc.ok {
			t.Errorf("AuthorityPort(%q) = %d, %v; want %d, %v", tc.in, port, ok, tc.port, tc.ok)
		}
	}
}

// FuzzAuthorityPort: for the authorities the request parser accepts, a port
// is found exactly when net.SplitHostPort finds a valid one.
func FuzzAuthorityPort(f *testing.F) {
	for _, s := range []string{"a.test:80", "[::1]:443", "a.test", "[::1]", "a:99999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !h1.ValidAuthority([]byte(s), true) {
			return
		}
		port, ok := AuthorityPort([]byte(s))
		_, ps, err := net.SplitHostPort(s)
		var want uint64
		if err == nil {
			want, err = strconv.ParseUint(ps, 10, 16)
		}
		if err == nil && want > 0 && (!ok || uint64(port) != want) {
			t.Fatalf("AuthorityPort(%q) = %d, %v; SplitHostPort finds port %d", s, port, ok, want)
		}
		if ok && port != 0 && (err != nil || uint64(port) != want) {
			t.Fatalf("AuthorityPort(%q) = %d, but SplitHostPort: %v", s, port, err)
		}
	})
}

// parse reads one request head.
func parse(t *testing.T, head string) *h1.Request {
	t.Helper()
	var r h1.Request
	if err := r.ReadHead(bufio.NewReader(strings.NewReader(head)), 1<<16); err != nil {
		t.Fatalf("ReadHead(%q): %v", head, err)
	}
	if err := r.Parse(); err != nil {
		t.Fatalf("Parse(%q): %v", head, err)
	}
	return &r
}

// TestConnectPort: a CONNECT target needs a port; a body or a second Host
// makes it ambiguous.
func TestConnectPort(t *testing.T) {
	for _, tc := range []struct {
		head string
		port uint16
		ok   bool
	}{
		{"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n", 443, true},
		{"CONNECT [2001:2::1]:8443 HTTP/1.1\r\nHost: [2001:2::1]:8443\r\n\r\n", 8443, true},
		{"CONNECT a.test HTTP/1.1\r\nHost: a.test\r\n\r\n", 0, false},
		{"CONNECT a.test:0 HTTP/1.1\r\nHost: a.test\r\n\r\n", 0, false},
		{"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\nContent-Length: 3\r\n\r\n", 0, false},
		{"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\nHost: b.test:443\r\n\r\n", 0, false},
	} {
		port, ok := ConnectPort(parse(t, tc.head))
		if port != tc.port || ok != tc.ok {
			t.Errorf("ConnectPort(%q) = %d, %v; want %d, %v", tc.head, port, ok, tc.port, tc.ok)
		}
	}
}

// TestAbsolutePort: the authority's port, else the scheme's (on a head
// Check has passed: it sets the authority).
func TestAbsolutePort(t *testing.T) {
	for _, tc := range []struct {
		head string
		port uint16
		ok   bool
	}{
		{"GET http://a.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n", 80, true},
		{"GET https://a.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n", 443, true},
		{"GET HTTPS://a.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n", 443, true},
		{"GET http://a.test:8080/x HTTP/1.1\r\nHost: a.test:8080\r\n\r\n", 8080, true},
		{"GET http://a.test:0/x HTTP/1.1\r\nHost: a.test:0\r\n\r\n", 0, false},
	} {
		r := parse(t, tc.head)
		if status, reason := r.Check(); status != 0 {
			t.Fatalf("Check(%q) = %d %s", tc.head, status, reason)
		}
		port, ok := AbsolutePort(r)
		if port != tc.port || ok != tc.ok {
			t.Errorf("AbsolutePort(%q) = %d, %v; want %d, %v", tc.head, port, ok, tc.port, tc.ok)
		}
	}
}
