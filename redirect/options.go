package redirect

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
)

// DefaultProxyPort is the proxy port when Options.ProxyPort is 0.
const DefaultProxyPort = 15001

// DefaultMark is the socket mark egressd's own sockets carry when
// Options.Mark is 0. It avoids the bits kube-proxy (0xc000) and Cilium
// (0x0f00) use in the low 16 bits; change it if the node uses it.
const DefaultMark uint32 = 0x30e5

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
	// of a family with no node address is refused (fail closed).
	NodeAddrs []netip.Addr
	// ExcludeCIDRs are destinations never redirected (cluster ranges).
	ExcludeCIDRs []netip.Prefix
	// Mark is the SO_MARK of egressd's own sockets, which are never
	// redirected. 0: DefaultMark.
	Mark uint32
	// PinDir is where links and maps are pinned; it must be on bpffs.
	// "": <bpffs mount>/egressd, mounting bpffs at /sys/fs/bpf if none is.
	PinDir string
	// DenyUDP refuses all UDP but DNS (port 53). UDP to port 443 is
	// refused regardless.
	DenyUDP bool
	// Logger receives attach and takeover events. nil: discard.
	Logger *slog.Logger
}

// maxExcluded is the size of the excluded map (egressd.h).
const maxExcluded = 4096 - 1 // one entry guards the v4-mapped range

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
	if s.Mark == 0 {
		s.Mark = DefaultMark
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
	if len(o.ExcludeCIDRs) > maxExcluded {
		return s, fmt.Errorf("%d exclude CIDRs: at most %d", len(o.ExcludeCIDRs), maxExcluded)
	}
	for _, p := range o.ExcludeCIDRs {
		if !p.IsValid() {
			return s, fmt.Errorf("exclude CIDR %v: invalid", p)
		}
	}
	return s, nil
}
