package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/egressd/egressd/internal/mounts"
)

// The upstream lives in its own network namespace behind a veth pair, on a
// /30 of the benchmarking range (198.18.0.0/15, never routed on the internet).
// The subnet is unusual on purpose: tests of other packages use the low end
// of the range and may run at the same time.
var (
	hostAddr     = &net.IPNet{IP: net.IPv4(198, 19, 248, 1), Mask: net.CIDRMask(30, 32)}
	upstreamAddr = &net.IPNet{IP: net.IPv4(198, 19, 248, 2), Mask: net.CIDRMask(30, 32)}
	upstreamIP   = upstreamAddr.IP.String()
)

// topology is the namespace, veth pair and client cgroup of one run.
type topology struct {
	nsName   string
	nsPath   string
	hostIf   string
	cgroup   string   // cgroup v2 directory; each egressd case has a child of it
	children []string // child cgroups, removed before cgroup
	fds      []int    // open directory fds of the children (CLONE_INTO_CGROUP)
}

// newTopology creates the namespace "egressbench-PID" with the upstream end
// of a veth pair, and the cgroup "egressbench-PID". On error, whatever was
// made is removed again.
func newTopology() (t *topology, err error) {
	pid := strconv.Itoa(os.Getpid())
	t = &topology{nsName: "egressbench-" + pid, hostIf: "egb" + pid}
	defer func() {
		if err != nil {
			t.Close()
		}
	}()
	if err := t.makeNetns(); err != nil {
		return nil, err
	}
	if err := t.makeVeth(); err != nil {
		return nil, err
	}
	if err := t.makeCgroup("egressbench-" + pid); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *topology) makeNetns() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return fmt.Errorf("current netns: %w", err)
	}
	defer orig.Close()
	ns, err := netns.NewNamed(t.nsName) // also switches this thread into it
	if err != nil {
		return fmt.Errorf("create netns %s: %w", t.nsName, err)
	}
	ns.Close()
	t.nsPath = filepath.Join("/var/run/netns", t.nsName)
	if err := netns.Set(orig); err != nil {
		return fmt.Errorf("return to host netns: %w", err)
	}
	return nil
}

func (t *topology) makeVeth() error {
	ns, err := netns.GetFromName(t.nsName)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", t.nsName, err)
	}
	defer ns.Close()
	peer := "eth0"
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: t.hostIf}, PeerName: peer,
		PeerNamespace: netlink.NsFd(int(ns))}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s: %w", t.hostIf, err)
	}
	if err := linkUp(nil, t.hostIf, hostAddr); err != nil {
		return err
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", t.nsName, err)
	}
	defer h.Close()
	if err := linkUp(h, "lo", nil); err != nil {
		return err
	}
	return linkUp(h, peer, upstreamAddr)
}

// linkUp adds addr (if any) to the link and sets it up; h nil is the host
// namespace.
func linkUp(h *netlink.Handle, name string, addr *net.IPNet) error {
	if h == nil {
		h = &netlink.Handle{}
	}
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find link %s: %w", name, err)
	}
	if addr != nil {
		if err := h.AddrAdd(l, &netlink.Addr{IPNet: addr}); err != nil {
			return fmt.Errorf("address %s on %s: %w", addr, name, err)
		}
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

func (t *topology) makeCgroup(name string) error {
	root, err := mounts.Find("cgroup2")
	if err != nil {
		return err
	}
	t.cgroup = filepath.Join(root, name)
	if err := os.Mkdir(t.cgroup, 0o755); err != nil {
		t.cgroup = ""
		return fmt.Errorf("create cgroup: %w", err)
	}
	return nil
}

// addCgroup creates the child cgroup name and returns its path and an open
// directory fd (closed by Close).
func (t *topology) addCgroup(name string) (string, int, error) {
	dir := filepath.Join(t.cgroup, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", -1, fmt.Errorf("create cgroup: %w", err)
	}
	t.children = append(t.children, dir)
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return "", -1, fmt.Errorf("open cgroup %s: %w", dir, err)
	}
	t.fds = append(t.fds, fd)
	return dir, fd, nil
}

// Close removes the cgroup (killing any process left in it), the veth pair
// and the namespace. It reports every step that failed.
func (t *topology) Close() error {
	var errs []error
	for _, fd := range t.fds {
		syscall.Close(fd)
	}
	t.fds = nil
	for _, dir := range t.children {
		errs = append(errs, removeCgroup(dir))
	}
	t.children = nil
	if t.cgroup != "" {
		errs = append(errs, removeCgroup(t.cgroup))
	}
	if l, err := netlink.LinkByName(t.hostIf); err == nil {
		errs = append(errs, netlink.LinkDel(l))
	}
	if t.nsPath != "" {
		errs = append(errs, netns.DeleteNamed(t.nsName))
	}
	return errors.Join(errs...)
}

// removeCgroup kills what is left in dir (by PID) and removes it, retrying
// while the kernel finishes reaping.
func removeCgroup(dir string) error {
	var err error
	for i := 0; i < 50; i++ {
		if b, rerr := os.ReadFile(filepath.Join(dir, "cgroup.procs")); rerr == nil {
			for _, f := range strings.Fields(string(b)) {
				if pid, _ := strconv.Atoi(f); pid > 0 {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		if err = os.Remove(dir); err == nil || os.IsNotExist(err) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("remove cgroup %s: %w", dir, err)
}
