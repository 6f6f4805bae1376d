package kerneltest

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NS is a network namespace. The nil *NS stands for the host (initial)
// namespace in every method and function of this package that takes one.
type NS struct {
	// Name is the name under /run/netns ("ip netns exec NAME" works).
	Name string
	// Path is the namespace's bind mount, for nsenter --net=PATH or setns.
	Path   string
	handle netns.NsHandle
}

var nsSeq atomic.Uint32

// Netns creates a throwaway named network namespace with its loopback up.
// It is deleted on cleanup.
func Netns(t testing.TB) *NS {
	t.Helper()
	name := fmt.Sprintf("egressd-test-%d-%d", unix.Getpid(), nsSeq.Add(1))
	ns := &NS{Name: name, Path: filepath.Join("/run/netns", name)}
	// NewNamed moves the calling thread into the new namespace;
	// onLockedThread moves it back.
	err := onLockedThread(func() (err error) {
		ns.handle, err = netns.NewNamed(name)
		return err
	})
	if err != nil {
		t.Fatalf("netns %s: %v", name, err)
	}
	t.Cleanup(func() {
		ns.handle.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	if err := ns.LinkUp("lo"); err != nil {
		t.Fatalf("netns %s: %v", name, err)
	}
	return ns
}

// Do runs f on an OS thread switched into the namespace. Sockets created by
// f stay in the namespace after Do returns.
func (ns *NS) Do(f func() error) error {
	if ns == nil {
		return f()
	}
	return onLockedThread(func() error {
		if err := netns.Set(ns.handle); err != nil {
			return fmt.Errorf("enter netns %s: %w", ns.Name, err)
		}
		return f()
	})
}

// onLockedThread runs f on a fresh goroutine locked to its thread, then
// moves the thread back to its original namespace. If that fails the
// thread stays locked, so the runtime throws it away with the goroutine.
func onLockedThread(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		ferr := f()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("restore netns: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// netlink returns a netlink handle that acts in the namespace. It opens
// rtnetlink only: the library's default also opens xfrm and netfilter
// sockets, which fail with EPROTONOSUPPORT on a kernel that cannot load
// their modules (the kernel matrix's guests).
func (ns *NS) netlink() (*netlink.Handle, error) {
	if ns == nil {
		return netlink.NewHandle(unix.NETLINK_ROUTE)
	}
	return netlink.NewHandleAt(ns.handle, unix.NETLINK_ROUTE)
}

// withLink runs f with a netlink handle in the namespace and the link named
// ifname.
func (ns *NS) withLink(ifname string, f func(*netlink.Handle, netlink.Link) error) error {
	h, err := ns.netlink()
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("link %s: %w", ifname, err)
	}
	return f(h, l)
}

// LinkUp sets the interface up.
func (ns *NS) LinkUp(ifname string) error {
	return ns.withLink(ifname, func(h *netlink.Handle, l netlink.Link) error {
		return h.LinkSetUp(l)
	})
}

// AddrAdd assigns prefix (address and length, e.g. 198.18.0.1/24) to the
// interface. IPv6 addresses skip duplicate address detection so they can be
// used at once.
func (ns *NS) AddrAdd(ifname string, prefix netip.Prefix) error {
	return ns.withLink(ifname, func(h *netlink.Handle, l netlink.Link) error {
		a := &netlink.Addr{IPNet: ipNet(prefix)}
		if prefix.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(l, a); err != nil {
			return fmt.Errorf("add %s to %s: %w", prefix, ifname, err)
		}
		return nil
	})
}

// RouteAdd routes dst through the interface, via gw unless gw is the zero
// Addr (on-link).
func (ns *NS) RouteAdd(dst netip.Prefix, ifname string, gw netip.Addr) error {
	return ns.withLink(ifname, func(h *netlink.Handle, l netlink.Link) error {
		r := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: ipNet(dst)}
		if gw.IsValid() {
			r.Gw = net.IP(gw.AsSlice())
		}
		if err := h.RouteAdd(r); err != nil {
			return fmt.Errorf("route %s dev %s via %v: %w", dst, ifname, gw, err)
		}
		return nil
	})
}

func ipNet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), bits)}
}
