package rules

import "testing"

// TestCanonicalHost is the one canonical form of a requested host: the proxy
// keys its upstream pool and names its TLS server with it, Match compares it
// with the rules. IPv6 literals in any spelling are one host.
func TestCanonicalHost(t *testing.T) {
	for in, want := range map[string]string{
		"api.example.com":        "api.example.com",
		"API.Example.COM.":       "api.example.com",
		"api.example.com:8080":   "api.example.com",
		"api.example.com.:80":    "api.example.com",
		"[2001:2::0:1]":          "2001:2::1",
		"[2001:0002:0:0::1]:443": "2001:2::1",
		"2001:2:0:0::1":          "2001:2::1",
		"[2001:2::ABCD]":         "2001:2::abcd",
		"[::ffff:198.19.32.1]":   "::ffff:198.19.32.1",
		"198.19.32.1:80":         "198.19.32.1",
		"[fe80::1%eth0]":         "fe80::1%eth0",
		"":                       "",
		":80":                    "",
	} {
		if got := CanonicalHost(in); got != want {
			t.Errorf("CanonicalHost(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestCanonicalHostAllocatesOnlyWhenItMust: a host already canonical (the
// common case, once per request) costs no allocation.
func TestCanonicalHostAllocatesOnlyWhenItMust(t *testing.T) {
	for _, h := range []string{"api.example.com", "api.example.com:443", "[2001:2::1]:443"} {
		if n := testing.AllocsPerRun(100, func() { _ = CanonicalHost(h) }); n != 0 {
			t.Errorf("CanonicalHost(%q): %v allocations, want 0", h, n)
		}
	}
}
