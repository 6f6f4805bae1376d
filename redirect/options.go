package redirect

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
)

// DefaultProxyPort is the proxy port when Options.ProxyPort is 0.
const DefaultProxyPort = 15001

// Options configures Attach. The zero value of each optional field has the
// documented default.
type Options struct {
	// Cgroups are the cgroup v2 directories whose processes (and
	// descendants) are redirected. Required.
	Cgroups []string
	// ProxyPort is the port the proxy listens on. 0: DefaultProxyPort.
	ProxyPort uint16
	// NodeAddrs are where sockets outside the host network namespace
	// (pods) are sent: at most one IPv4 and one IPv6 address. A pod socket
	// of a family with no node address is refused (fail closed). Only
	// their ProxyPort is exempt; other ports are egress like any address.
	NodeAddrs []netip.Addr
	// ExcludeCIDRs are destinations never redirected nor refused
	// (cluster ranges), whatever the protocol.
	ExcludeCIDRs []netip.Prefix
	// DNSServers are the resolvers processes may reach on port 53, UDP
	// and TCP. Port 53 elsewhere is refused (UDP) or redirected (TCP).
	DNSServers []netip.Prefix
	// AllowUDP are the UDP destinations allowed besides DNSServers; all
	// other UDP is refused. Port 443 (QUIC) is refused regardless.
	AllowUDP []UDPRule
	// ExemptCgroups are cgroup v2 directories below the attached ones
	// whose processes (and descendants) are left alone, as if the programs
	// were not attached. One that holds an attached cgroup is refused.
	// More can be exempted at run time (Redirector.SetExempt).
	ExemptCgroups []string
	// ExemptSelf exempts the agent's own cgroup where that is right (see
	// Redirector.selfExempt): below an attached cgroup, holding none, and
	// holding no other process.
	ExemptSelf bool
	// PinDir is where links and maps are pinned; it must be on bpffs.
	// "": <bpffs mount>/egressd, mounting bpffs at /sys/fs/bpf if none is.
	PinDir string
	// Logger receives attach and takeover events. nil: discard.
	Logger *slog.Logger
}

// UDPRule allows UDP to Port at the addresses in Prefix (the zero Prefix:
// any address).
type UDPRule struct {
	Prefix netip.Prefix
	Port   uint16
}

// ParseUDPRule parses "PORT", "CIDR:PORT" or "IP:PORT" ("[IPv6]:PORT"
// too). Port 443 is refused: QUIC never bypasses the proxy.
func ParseUDPRule(s string) (UDPRule, error) {
	var r UDPRule
	addr, port := "", s
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		addr, port = strings.Trim(s[:i], "[]"), s[i+1:]
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return r, fmt.Errorf("UDP rule %q: want PORT, CIDR:PORT or IP:PORT with a port of 1-65535", s)
	}
	r.Port = uint16(n)
	if r.Port == 443 {
		return r, fmt.Errorf("UDP rule %q: UDP to port 443 (QUIC) is always refused", s)
	}
	if addr != "" {
		if r.Prefix, err = parsePrefix(addr); err != nil {
			return r, fmt.Errorf("UDP rule %q: %w", s, err)
		}
	}
	return r, nil
}

func (r UDPRule) String() string {
	if !r.Prefix.IsValid() {
		return strconv.Itoa(int(r.Port))
	}
	return r.Prefix.String() + ":" + strconv.Itoa(int(r.Port))
}

// parsePrefix parses a CIDR or a single address (as /32 or /128).
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap().WithZone("")
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// ParsePrefix parses a CIDR, or an address standing for itself alone (the
// form of --dns-server).
func ParsePrefix(s string) (netip.Prefix, error) { return parsePrefix(s) }

// Sizes of the tries (egressd.h), less the entry guarding the v4-mapped
// range.
const (
	maxExcluded  = 4096 - 1
	maxResolvers = 256 - 1
	maxAllowUDP  = 1024 - 1
)

// settings are Options validated and with defaults applied.
type settings struct {
	Options
	node4, node6 netip.Addr
}

func (o Options) settings() (settings, error) {
	s := settings{Options: o}
	if len(o.Cgroups) == 0 {
		return s, errors.New("no cgroup to attach to")
	}
	if s.ProxyPort == 0 {
		s.ProxyPort = DefaultProxyPort
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	for _, a := range o.NodeAddrs {
		a = a.Unmap()
		slot := &s.node6
		if a.Is4() {
			slot = &s.node4
		}
		switch {
		case !a.IsValid() || a.IsUnspecified() || a.IsLoopback():
			return s, fmt.Errorf("node address %v: not usable as a proxy address", a)
		case slot.IsValid() && *slot != a:
			return s, fmt.Errorf("node addresses %v and %v: at most one per family", *slot, a)
		}
		*slot = a.WithZone("")
	}
	for _, l := range []struct {
		what     string
		prefixes []netip.Prefix
		max      int
	}{{"exclude CIDR", o.ExcludeCIDRs, maxExcluded}, {"DNS server", o.DNSServers, maxResolvers}} {
		if len(l.prefixes) > l.max {
			return s, fmt.Errorf("%d %ss: at most %d", len(l.prefixes), l.what, l.max)
		}
		for _, p := range l.prefixes {
			if !p.IsValid() {
				return s, fmt.Errorf("%s %v: invalid", l.what, p)
			}
		}
	}
	if len(o.AllowUDP) > maxAllowUDP {
		return s, fmt.Errorf("%d UDP rules: at most %d", len(o.AllowUDP), maxAllowUDP)
	}
	for _, r := range o.AllowUDP {
		if r.Port == 0 || r.Port == 443 {
			return s, fmt.Errorf("UDP rule %v: port must be 1-65535 and not 443", r)
		}
	}
	return s, nil
}
