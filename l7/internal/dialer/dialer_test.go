package dialer

import (
	"bufio"
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

// TestParseEgressProxy: the URL forms taken and refused, the default
// ports, the credentials as a Basic Proxy-Authorization, the password
// never in the name.
func TestParseEgressProxy(t *testing.T) {
	for _, tt := range []struct {
		url, addr, auth string
		tls             bool
	}{
		{"http://squid.test", "squid.test:80", "", false},
		{"https://squid.test", "squid.test:443", "", true},
		{"http://u:p@squid.test:3128/", "squid.test:3128", "Basic dTpw", false},
		{"http://[2001:2::7]:3128", "[2001:2::7]:3128", "", false},
	} {
		u, _ := url.Parse(tt.url)
		ep, err := ParseEgressProxy(u)
		if err != nil {
			t.Fatalf("%s: %v", tt.url, err)
		}
		if ep.addr != tt.addr || ep.auth != tt.auth || ep.tls != tt.tls || strings.Contains(ep.name, ":p@") {
			t.Errorf("%s: %+v", tt.url, *ep)
		}
		var b strings.Builder
		bw := bufio.NewWriter(&b)
		ep.WriteAuth(bw)
		bw.Flush()
		want := ""
		if tt.auth != "" {
			want = "Proxy-Authorization: " + tt.auth + "\r\n"
		}
		if b.String() != want {
			t.Errorf("%s: WriteAuth wrote %q, want %q", tt.url, b.String(), want)
		}
	}
	for _, bad := range []string{"socks5://squid.test", "http://squid.test/path", "http://squid.test?q=1", "http://"} {
		u, _ := url.Parse(bad)
		if _, err := ParseEgressProxy(u); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
	if ep, err := ParseEgressProxy(nil); ep != nil || err != nil {
		t.Errorf("nil URL: %v, %v", ep, err)
	}
}

// TestTarget: resolve mode dials the name as an absolute name (never under
// the search list), original mode the original destination.
func TestTarget(t *testing.T) {
	orig := netip.MustParseAddrPort("198.19.32.10:8080")
	for _, tt := range []struct {
		original   bool
		host, want string
	}{
		{false, "api.example.test", "api.example.test.:8080"},
		{false, "api.example.test.", "api.example.test.:8080"},
		{false, "198.19.32.11", "198.19.32.11:8080"},
		{false, "2001:2::7", "[2001:2::7]:8080"},
		{true, "api.example.test", "198.19.32.10:8080"},
	} {
		d := &Dialer{cfg: Config{Original: tt.original}}
		if got := d.target(tt.host, orig); got != tt.want {
			t.Errorf("original=%v %s: %s, want %s", tt.original, tt.host, got, tt.want)
		}
	}
}
