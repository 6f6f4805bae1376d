package kerneltest

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Veth joins namespaces a and b (nil: the host) with a veth pair, assigns
// aAddrs and bAddrs (with their prefix lengths, so the connected routes
// appear) and sets both ends up. It returns the interface names. The pair is
// removed on cleanup (and with either namespace). With an end in the host
// namespace it holds LockHost for the rest of the test.
func Veth(t testing.TB, a *NS, aAddrs []netip.Prefix, b *NS, bAddrs []netip.Prefix) (aIf, bIf string) {
	t.Helper()
	if a == nil || b == nil {
		LockHost(t)
	}
	// Unique across test processes (host-side names share one namespace)
	// and within IFNAMSIZ: "e<pid>-<seq>a".
	base := fmt.Sprintf("e%x-%x", unix.Getpid(), nsSeq.Add(1))
	aIf, bIf = base+"a", base+"b"
	h, err := a.netlink()
	if err != nil {
		t.Fatalf("veth: %v", err)
	}
	defer h.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: aIf}, PeerName: bIf}
	if b != nil {
		veth.PeerNamespace = netlink.NsFd(int(b.handle))
	}
	if err := h.LinkAdd(veth); err != nil {
		t.Fatalf("veth %s-%s: %v", aIf, bIf, err)
	}
	t.Cleanup(func() {
		// Deleting one end removes the pair; it may already be gone with
		// its namespace.
		_ = a.withLink(aIf, func(h *netlink.Handle, l netlink.Link) error { return h.LinkDel(l) })
	})
	for _, end := range []struct {
		ns    *NS
		name  string
		addrs []netip.Prefix
	}{{a, aIf, aAddrs}, {b, bIf, bAddrs}} {
		for _, p := range end.addrs {
			if err := end.ns.AddrAdd(end.name, p); err != nil {
				t.Fatalf("veth: %v", err)
			}
		}
		if err := end.ns.LinkUp(end.name); err != nil {
			t.Fatalf("veth: %v", err)
		}
	}
	return aIf, bIf
}
