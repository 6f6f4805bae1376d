package main

import (
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestDatapathFlags(t *testing.T) {
	getenv := env("EGRESSD_ALLOW_UDP", "5353, [2001:db8::1]:51820", "EGRESSD_DNS_SERVER", "10.96.0.10,fd00::/64")
	cfg, err := parseRunFlags([]string{"--rules", "r", "--cgroup", "c", "--allow-udp", "198.18.0.0/15:4789"}, getenv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var rules []string
	for _, r := range cfg.AllowUDP {
		rules = append(rules, r.String())
	}
	if !slices.Equal(rules, []string{"198.18.0.0/15:4789"}) {
		t.Errorf("--allow-udp %v: the flag must win over the environment", rules)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.96.0.10/32"), netip.MustParsePrefix("fd00::/64")}
	if !slices.Equal(cfg.DNSServers, want) {
		t.Errorf("dns servers from env %v, want %v", cfg.DNSServers, want)
	}
	cfg, err = parseRunFlags([]string{"--rules", "r", "--cgroup", "c"}, getenv, io.Discard)
	if err != nil || len(cfg.AllowUDP) != 2 || cfg.AllowUDP[1].String() != "2001:db8::1/128:51820" || cfg.AllowUDP[0].String() != "5353" {
		t.Errorf("EGRESSD_ALLOW_UDP: %v, %v", cfg.AllowUDP, err)
	}
}

// Without --dns-server the DNS servers are resolv.conf's nameservers and
// --dns; with it, exactly those given.
func TestDNSServersDefault(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(conf, []byte("search cluster.local\nnameserver 169.254.20.10\nnameserver fe80::1%eth0\nnameserver bogus\noptions ndots:5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	defer func(old string) { resolvConf = old }(resolvConf)
	resolvConf = conf
	log := slog.New(slog.DiscardHandler)
	got := dnsServers(&runConfig{DNS: "10.96.0.10:53"}, log)
	want := []netip.Prefix{netip.MustParsePrefix("169.254.20.10/32"), netip.MustParsePrefix("fe80::1/128"), netip.MustParsePrefix("10.96.0.10/32")}
	if !slices.Equal(got, want) {
		t.Errorf("default: %v; want %v", got, want)
	}
	given := []netip.Prefix{netip.MustParsePrefix("192.0.2.53/32")}
	if got := dnsServers(&runConfig{DNS: "10.96.0.10:53", DNSServers: given}, log); !slices.Equal(got, given) {
		t.Errorf("--dns-server: %v; want %v", got, given)
	}
	if got := dnsServers(&runConfig{DNS: "dns.example:53", DNSServers: nil}, log); len(got) != 2 {
		t.Errorf("--dns by name: %v; want resolv.conf's two alone", got)
	}
	resolvConf = filepath.Join(t.TempDir(), "missing")
	if got := dnsServers(&runConfig{}, log); len(got) != 0 {
		t.Errorf("no resolv.conf, no --dns: %v; want none", got)
	}
}
