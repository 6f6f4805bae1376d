package redirect

import (
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"

	"github.com/egressd/egressd/bpf"
)

// The tries the programs read: written once per Attach, before the
// programs are attached, and not pinned (each agent brings its own).

// v4Range is the v4-mapped range: IPv4 destinations, as the programs see
// them. An IPv6 prefix that contains it (::/0, say) must not cover IPv4, so
// each trie holds it as "no" unless IPv4 0.0.0.0/0 itself is listed.
var v4Range = netip.PrefixFrom(netip.IPv4Unspecified(), 0)

func (r *Redirector) fill(s settings) error {
	if err := fillTrie(r.objs.Excluded, "exclude", s.ExcludeCIDRs); err != nil {
		return err
	}
	if err := fillTrie(r.objs.Resolvers, "DNS server", s.DNSServers); err != nil {
		return err
	}
	if err := fillUDP(r.objs.UdpAllow, s.AllowUDP); err != nil {
		return err
	}
	if err := r.loadExempt(); err != nil {
		return err
	}
	return r.fillExempt(s)
}

func fillTrie(m *ebpf.Map, what string, prefixes []netip.Prefix) error {
	if err := m.Put(lpmKey(v4Range), uint8(0)); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	for _, p := range prefixes {
		if err := m.Put(lpmKey(p), uint8(1)); err != nil {
			return fmt.Errorf("%s %v: %w", what, p, err)
		}
	}
	return nil
}

// fillUDP writes the UDP rules: a rule without a prefix allows its port at
// every address, IPv4 and IPv6; one with an IPv6 prefix never covers IPv4.
func fillUDP(m *ebpf.Map, rules []UDPRule) error {
	for _, r := range rules {
		if r.Prefix.IsValid() && r.Prefix.Addr().Is6() && r.Prefix.Bits() <= 96 {
			if err := m.Put(udpKey(v4Range, r.Port), uint8(0)); err != nil {
				return fmt.Errorf("UDP rule %v: %w", r, err)
			}
		}
	}
	for _, r := range rules {
		key := bpf.EgressdUdpKey{Prefixlen: 32, Port: portWord(r.Port)} // any address
		if r.Prefix.IsValid() {
			key = udpKey(r.Prefix, r.Port)
		}
		if err := m.Put(key, uint8(1)); err != nil {
			return fmt.Errorf("UDP rule %v: %w", r, err)
		}
	}
	return nil
}

func udpKey(p netip.Prefix, port uint16) bpf.EgressdUdpKey {
	k := lpmKey(p)
	return bpf.EgressdUdpKey{Prefixlen: 32 + k.Prefixlen, Port: portWord(port), Addr: k.Addr}
}

// portWord is the port as udp_key holds it: network order in the first two
// bytes of the word.
func portWord(port uint16) uint32 {
	return words(netip.AddrFrom4([4]byte{byte(port >> 8), byte(port), 0, 0}))[3]
}
