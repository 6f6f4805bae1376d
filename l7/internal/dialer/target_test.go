package dialer

import (
	"bufio"
	"strings"
	"testing"
)

// TestWriteTarget: the absolute form a plain request is sent to the egress
// proxy in; port 80 left out, IPv6 in brackets, OPTIONS * as the bare
// authority.
func TestWriteTarget(t *testing.T) {
	for _, tc := range []struct {
		host string
		port uint16
		path string
		want string
	}{
		{"a.test", 80, "/x?y", "http://a.test/x?y"},
		{"a.test", 8080, "/", "http://a.test:8080/"},
		{"2001:2::1", 80, "/x", "http://[2001:2::1]/x"},
		{"2001:2::1", 8080, "/x", "http://[2001:2::1]:8080/x"},
		{"a.test", 8080, "*", "http://a.test:8080"},
		{"a.test", 80, "", "http://a.test/"},
	} {
		var b strings.Builder
		bw := bufio.NewWriter(&b)
		WriteTarget(bw, tc.host, tc.port, []byte(tc.path))
		bw.Flush()
		if b.String() != tc.want {
			t.Errorf("WriteTarget(%q, %d, %q) = %q, want %q", tc.host, tc.port, tc.path, b.String(), tc.want)
		}
	}
	bw := bufio.NewWriterSize(nil, 4096)
	path := []byte("/x")
	if n := testing.AllocsPerRun(100, func() { WriteTarget(bw, "a.test", 8080, path); bw.Reset(nil) }); n != 0 {
		t.Errorf("WriteTarget allocates %v times", n)
	}
}
