package redirect

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/egressd/egressd/internal/kerneltest"
)

func TestOptionsDefaults(t *testing.T) {
	s, err := Options{Cgroups: []string{"/x"}}.settings()
	if err != nil {
		t.Fatal(err)
	}
	if s.ProxyPort != DefaultProxyPort || s.Logger == nil {
		t.Errorf("defaults: port %d logger %v", s.ProxyPort, s.Logger)
	}
	s, err = Options{Cgroups: []string{"/x"}, NodeAddrs: []netip.Addr{
		netip.MustParseAddr("::ffff:10.0.0.1"), netip.MustParseAddr("fd00::1"), netip.MustParseAddr("10.0.0.1"),
	}}.settings()
	if err != nil || s.node4 != netip.MustParseAddr("10.0.0.1") || s.node6 != netip.MustParseAddr("fd00::1") {
		t.Errorf("node addrs: %v %v, %v", s.node4, s.node6, err)
	}
}

func TestOptionsInvalid(t *testing.T) {
	a := netip.MustParseAddr
	for _, tt := range []struct {
		name string
		opts Options
		want string
	}{
		{"no cgroup", Options{}, "no cgroup"},
		{"two v4 node addrs", Options{Cgroups: []string{"/x"}, NodeAddrs: []netip.Addr{a("10.0.0.1"), a("10.0.0.2")}}, "at most one per family"},
		{"loopback node addr", Options{Cgroups: []string{"/x"}, NodeAddrs: []netip.Addr{a("127.0.0.1")}}, "not usable"},
		{"unspecified node addr", Options{Cgroups: []string{"/x"}, NodeAddrs: []netip.Addr{a("::")}}, "not usable"},
		{"invalid CIDR", Options{Cgroups: []string{"/x"}, ExcludeCIDRs: []netip.Prefix{{}}}, "invalid"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.opts.settings(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to say %q", err, tt.want)
			}
		})
	}
}

func TestAddressForm(t *testing.T) {
	for _, s := range []string{"198.18.0.2", "2001:2::2", "::1", "0.0.0.0"} {
		a := netip.MustParseAddr(s)
		if got := addr(words(a)); got != a {
			t.Errorf("addr(words(%v)) = %v", a, got)
		}
	}
	// An IPv4 address and its v4-mapped form are the same key.
	if words(netip.MustParseAddr("10.1.2.3")) != words(netip.MustParseAddr("::ffff:10.1.2.3")) {
		t.Error("v4 and v4-mapped differ")
	}
	k := lpmKey(netip.MustParsePrefix("10.1.2.3/8"))
	if k.Prefixlen != 104 || addr(k.Addr) != netip.MustParseAddr("10.0.0.0") {
		t.Errorf("lpmKey(10.1.2.3/8) = %d %v", k.Prefixlen, addr(k.Addr))
	}
}

func FuzzAddressForm(f *testing.F) {
	f.Add([]byte{198, 18, 0, 2})
	f.Add(make([]byte, 16))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, ok := netip.AddrFromSlice(b)
		if !ok {
			return
		}
		if got := addr(words(a)); got != a.Unmap() {
			t.Fatalf("addr(words(%v)) = %v", a, got)
		}
	})
}

func TestAttachErrors(t *testing.T) {
	kerneltest.Require(t)
	tmp := t.TempDir()
	_, err := Attach(Options{Cgroups: []string{tmp}, PinDir: testPinDir(t)})
	if !errors.Is(err, ErrNoCgroupV2) {
		t.Errorf("attach to %s: err = %v, want ErrNoCgroupV2", tmp, err)
	}
	_, err = Attach(Options{Cgroups: []string{kerneltest.Cgroup(t)}, PinDir: tmp + "/pins"})
	if err == nil || !strings.Contains(err.Error(), "not on bpffs") {
		t.Errorf("pin dir on tmpfs: err = %v, want 'not on bpffs'", err)
	}
	if _, err := os.Stat(tmp + "/pins"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin dir created on a failed attach: %v", err)
	}
}

// A pinned map of another layout (another egressd version) is refused with
// advice, not overwritten.
func TestAttachIncompatiblePin(t *testing.T) {
	kerneltest.Require(t)
	dir := testPinDir(t)
	if err := os.MkdirAll(filepath.Join(dir, "maps"), 0o700); err != nil {
		t.Fatal(err)
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "conn_origs", Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Pin(filepath.Join(dir, "maps", "conn_origs")); err != nil {
		t.Fatal(err)
	}
	_, err = Attach(Options{Cgroups: []string{kerneltest.Cgroup(t)}, PinDir: dir})
	if !errors.Is(err, ebpf.ErrMapIncompatible) || !strings.Contains(err.Error(), "uninstall") {
		t.Errorf("err = %v, want ErrMapIncompatible with advice", err)
	}
}

func TestCgroupV2Mount(t *testing.T) {
	kerneltest.Require(t)
	p, err := CgroupV2Mount()
	if err != nil {
		t.Fatal(err)
	}
	if err := checkCgroup(p); err != nil {
		t.Error(err)
	}
}
