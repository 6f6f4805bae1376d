package addrpolicy

import (
	"net/netip"
	"testing"
)

func TestAddrClass(t *testing.T) {
	for a, want := range map[string]string{
		"127.0.0.1": "loopback", "127.9.9.9": "loopback", "::1": "loopback", "::ffff:127.0.0.1": "loopback",
		"0.0.0.0": "unspecified", "::": "unspecified", "0.1.2.3": "unspecified",
		"169.254.169.254": "link_local", "fe80::1": "link_local",
		"224.0.0.1": "multicast", "ff02::1": "multicast", "255.255.255.255": "broadcast",
		"198.18.48.9": "", "2001:2:0:12::1": "",
		"fd00:ec2::254": "metadata", "fd20:ce::254": "metadata", "100.100.100.200": "metadata",
		"64:ff9b::7f00:1": "loopback", "64:ff9b::a9fe:a9fe": "link_local", "64:ff9b::6464:64c8": "metadata",
		"64:ff9b::": "unspecified", "64:ff9b::c612:3009": "", "fd00:ec2::253": "",
	} {
		var pol Policy
		pol.NodeAddrs = func() ([]netip.Addr, error) { return nil, nil }
		err := pol.Check(netip.MustParseAddr(a), nil)
		got := ""
		if re, ok := err.(*RefusedError); ok {
			got = re.Code
		}
		if got != want {
			t.Errorf("%s: refused as %q, want %q", a, got, want)
		}
	}
}
