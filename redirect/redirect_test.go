package redirect

import (
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/egressd/egressd/internal/kerneltest"
)

func hostPort(a netip.Addr, port uint16) string {
	return netip.AddrPortFrom(a, port).String()
}

// want asserts that every connection of o answered want.
func want(t *testing.T, what string, o outcome, want string) {
	t.Helper()
	if len(o.Errors) > 0 || len(o.Replies) != 1 || o.Replies[want] == 0 {
		t.Errorf("%s: got replies %v errors %v; want all %q", what, o.Replies, o.Errors, want)
	}
}

// wantErr asserts that every connection of o failed with errno.
func wantErr(t *testing.T, what string, o outcome, errno string) {
	t.Helper()
	if len(o.Replies) > 0 || len(o.Errors) != 1 || o.Errors[errno] == 0 {
		t.Errorf("%s: got replies %v errors %v; want all %s", what, o.Replies, o.Errors, errno)
	}
}

func TestRedirect(t *testing.T) {
	tp := newTopo(t)
	r := tp.attach(t, tp.options())
	ext4 := hostPort(extAddr4, tp.extPort)
	ext6 := hostPort(extAddr6, tp.extPort)

	tests := []struct {
		name string
		pod  bool
		j    job
		want string
	}{
		{"ipv4", false, job{Network: "tcp4", Addr: ext4}, "orig " + ext4},
		{"ipv6", false, job{Network: "tcp6", Addr: ext6}, "orig " + ext6},
		{"v4-mapped", false, job{Network: "tcp6-mapped", Addr: ext4}, "orig " + ext4},
		{"fast open", false, job{Network: "tcp4-fastopen", Addr: ext4}, "orig " + ext4},
		// MPTCP connects its first subflow, a TCP socket, through the hooks.
		{"mptcp", false, job{Network: "mptcp4", Addr: ext4}, "orig " + ext4},
		// io_uring's connect runs the same socket layer, hooks included.
		{"io_uring", false, job{Network: "tcp4-iouring", Addr: ext4}, "orig " + ext4},
		{"pod io_uring", true, job{Network: "tcp4-iouring", Addr: ext4}, "orig " + ext4},
		{"pod fast open", true, job{Network: "tcp4-fastopen", Addr: ext4}, "orig " + ext4},
		{"pod mptcp", true, job{Network: "mptcp4", Addr: ext4}, "orig " + ext4},
		{"pod ipv4", true, job{Network: "tcp4", Addr: ext4}, "orig " + ext4},
		{"pod ipv6", true, job{Network: "tcp6", Addr: ext6}, "orig " + ext6},
		{"pod v4-mapped", true, job{Network: "tcp6-mapped", Addr: ext4}, "orig " + ext4},
		// A mark exempts nothing, not even egressd's old default.
		{"marked", false, job{Network: "tcp4", Addr: ext4, Mark: 0x30e5}, "orig " + ext4},
		{"pod marked", true, job{Network: "tcp4", Addr: ext4, Mark: 0x30e5}, "orig " + ext4},
		{"loopback", false, job{Network: "tcp4", Addr: tp.loopback.String()}, "loopback"},
		{"excluded ipv4", false, job{Network: "tcp4", Addr: hostPort(excludedAddr4, tp.extPort)}, "direct"},
		{"excluded ipv6", false, job{Network: "tcp6", Addr: hostPort(excludedAddr6, tp.extPort)}, "direct"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.j.N = 3
			var ns *kerneltest.NS
			if tt.pod {
				ns = tp.pod
			}
			want(t, tt.name, runChild(t, tp.cg, ns, tt.j), tt.want)
		})
	}
	t.Run("outside cgroup", func(t *testing.T) {
		want(t, "outside", runChild(t, "", nil, job{Network: "tcp4", Addr: ext4, N: 3}), "direct")
	})
	// Each original destination names the cgroup of the process that
	// connected (the host's and the pod's alike).
	var st unix.Stat_t
	if err := unix.Stat(tp.cg, &st); err != nil {
		t.Fatal(err)
	}
	if ids := tp.proxy.cgroupIDs(); len(ids) != 1 || ids[st.Ino] != 42 {
		t.Errorf("cgroup IDs recorded %v, want all 42 connections from %d (%s)", ids, st.Ino, tp.cg)
	}
	s, err := r.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stats: %+v", s)
	if s.Redirected != 42 || s.Tracked != 42 || s.SkippedOwn != 0 || s.SkippedLoopback != 3 || s.SkippedExcluded != 6 {
		t.Errorf("stats %+v: want 42 redirected and tracked, 3 loopback, 6 excluded", s)
	}
}

// UDP is default deny: DNS to a named server, the operator's rules and
// excluded ranges pass; QUIC never does.
func TestUDP(t *testing.T) {
	tp := newTopo(t)
	opts := tp.options()
	opts.AllowUDP = []UDPRule{{Port: 5353}, {Prefix: netip.PrefixFrom(otherAddr6, 128), Port: 51820}}
	tp.attach(t, opts)
	udp := func(a netip.Addr, port int) string { return hostPort(a, uint16(port)) }
	for _, tt := range []struct {
		name string
		j    job
		want string // reply, or errno
	}{
		{"dns", job{Network: "udp4", Addr: udp(extAddr4, 53)}, "echo 53"},
		{"dns ipv6", job{Network: "udp6", Addr: udp(extAddr6, 53)}, "echo 53"},
		{"dns unconnected", job{Network: "udp4", Addr: udp(extAddr4, 53), Unconn: true}, "echo 53"},
		{"dns not a server", job{Network: "udp4", Addr: udp(otherAddr4, 53)}, "EPERM"},
		{"dns not a server ipv6 unconnected", job{Network: "udp6", Addr: udp(otherAddr6, 53), Unconn: true}, "EPERM"},
		{"quic", job{Network: "udp4", Addr: udp(extAddr4, 443)}, "EPERM"},
		{"quic ipv6", job{Network: "udp6", Addr: udp(extAddr6, 443)}, "EPERM"},
		{"quic unconnected", job{Network: "udp4", Addr: udp(extAddr4, 443), Unconn: true}, "EPERM"},
		{"quic unconnected ipv6", job{Network: "udp6", Addr: udp(extAddr6, 443), Unconn: true}, "EPERM"},
		{"allowed port", job{Network: "udp4", Addr: udp(otherAddr4, 5353)}, "echo 5353"},
		{"allowed port ipv6 unconnected", job{Network: "udp6", Addr: udp(otherAddr6, 5353), Unconn: true}, "echo 5353"},
		{"allowed address and port", job{Network: "udp6", Addr: udp(otherAddr6, 51820)}, "echo 51820"},
		{"port allowed elsewhere", job{Network: "udp6", Addr: udp(extAddr6, 51820)}, "EPERM"},
		{"port allowed elsewhere unconnected", job{Network: "udp4", Addr: udp(otherAddr4, 51820), Unconn: true}, "EPERM"},
		{"excluded", job{Network: "udp4", Addr: udp(excludedAddr4, 51820)}, "echo 51820"},
		{"unspecified", job{Network: "udp4", Addr: "0.0.0.0:5353"}, "EPERM"},
		{"unspecified ipv6 unconnected", job{Network: "udp6", Addr: "[::]:5353", Unconn: true}, "EPERM"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.j.N = 2
			o := runChild(t, tp.cg, nil, tt.j)
			if tt.want == "EPERM" {
				wantErr(t, tt.name, o, "EPERM")
			} else {
				want(t, tt.name, o, tt.want)
			}
		})
	}
}

func TestPodWithoutNodeAddrFailsClosed(t *testing.T) {
	tp := newTopo(t)
	opts := tp.options()
	opts.NodeAddrs = []netip.Addr{nodeAddr4} // IPv4 only
	r := tp.attach(t, opts)
	want(t, "pod ipv4", runChild(t, tp.cg, tp.pod, job{Network: "tcp4", Addr: hostPort(extAddr4, tp.extPort), N: 2}),
		"orig "+hostPort(extAddr4, tp.extPort))
	wantErr(t, "pod ipv6", runChild(t, tp.cg, tp.pod, job{Network: "tcp6", Addr: hostPort(extAddr6, tp.extPort), N: 2}), "ECONNREFUSED")

	opts.NodeAddrs = nil
	tp.attach(t, opts)
	wantErr(t, "pod ipv4 no node", runChild(t, tp.cg, tp.pod, job{Network: "tcp4", Addr: hostPort(extAddr4, tp.extPort), N: 2}), "ECONNREFUSED")
	wantErr(t, "pod v4-mapped no node", runChild(t, tp.cg, tp.pod, job{Network: "tcp6-mapped", Addr: hostPort(extAddr4, tp.extPort), N: 2}), "ECONNREFUSED")
	// The host namespace still goes to loopback.
	want(t, "host ipv4", runChild(t, tp.cg, nil, job{Network: "tcp4", Addr: hostPort(extAddr4, tp.extPort), N: 2}),
		"orig "+hostPort(extAddr4, tp.extPort))
	if s, err := r.Stats(); err != nil || s.FailClosed != 6 {
		t.Errorf("stats %+v, %v: want 6 fail-closed", s, err)
	}
}

// Excluding all of IPv6 does not exclude IPv4, although IPv4 destinations
// live in the programs' trie as v4-mapped IPv6.
func TestExcludeIPv6KeepsIPv4(t *testing.T) {
	tp := newTopo(t)
	opts := tp.options()
	opts.ExcludeCIDRs = []netip.Prefix{netip.MustParsePrefix("::/0")}
	tp.attach(t, opts)
	ext4, ext6 := hostPort(extAddr4, tp.extPort), hostPort(extAddr6, tp.extPort)
	want(t, "ipv4", runChild(t, tp.cg, nil, job{Network: "tcp4", Addr: ext4, N: 2}), "orig "+ext4)
	want(t, "v4-mapped", runChild(t, tp.cg, nil, job{Network: "tcp6-mapped", Addr: ext4, N: 2}), "orig "+ext4)
	want(t, "ipv6", runChild(t, tp.cg, nil, job{Network: "tcp6", Addr: ext6, N: 2}), "direct")

	opts.ExcludeCIDRs = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}
	tp.attach(t, opts)
	want(t, "ipv4 excluded", runChild(t, tp.cg, nil, job{Network: "tcp4", Addr: ext4, N: 2}), "direct")
	want(t, "ipv6 not excluded", runChild(t, tp.cg, nil, job{Network: "tcp6", Addr: ext6, N: 2}), "orig "+ext6)
}
