package redirect

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/egressd/egressd/internal/mounts"
)

// Sentinel errors, wrapped by Attach and Uninstall.
var (
	// ErrNotRoot: the agent lacks the privileges to load BPF programs.
	ErrNotRoot = errors.New("not running as root")
	// ErrNoCgroupV2: cgroup v2 is not mounted, or a path is not on it.
	ErrNoCgroupV2 = errors.New("no cgroup v2")
	// ErrUnsupported: BPF is disabled or the kernel is too old.
	ErrUnsupported = errors.New("kernel can't redirect")
)

// defaultBPFFS is where bpffs is mounted when no mount exists.
const defaultBPFFS = "/sys/fs/bpf"

// CgroupV2Mount returns where cgroup v2 is mounted, from /proc/mounts
// (/sys/fs/cgroup on unified hosts, /sys/fs/cgroup/unified on hybrid ones).
func CgroupV2Mount() (string, error) {
	p, err := mounts.Find("cgroup2")
	if errors.Is(err, mounts.ErrNotMounted) {
		return "", fmt.Errorf("%w: no cgroup2 mount in /proc/mounts", ErrNoCgroupV2)
	}
	return p, err
}

// checkCgroup makes sure dir is a cgroup v2 directory.
func checkCgroup(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("cgroup %s: %w", dir, err)
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		if _, err := CgroupV2Mount(); err != nil {
			return fmt.Errorf("cgroup %s: %w", dir, err)
		}
		return fmt.Errorf("cgroup %s: %w: not on the cgroup2 filesystem", dir, ErrNoCgroupV2)
	}
	return nil
}

// pinDir returns dir, or the default under the bpffs mount, after making
// sure it is on bpffs. With mount, bpffs is mounted if it is not.
func pinDir(dir string, mount bool) (string, error) {
	if dir == "" {
		fs, err := mounts.Find("bpf")
		switch {
		case errors.Is(err, mounts.ErrNotMounted) && mount:
			if err := mountBPFFS(defaultBPFFS); err != nil {
				return "", err
			}
			fs = defaultBPFFS
		case err != nil:
			return "", err
		}
		dir = filepath.Join(fs, "egressd")
	}
	// The nearest existing ancestor tells the filesystem dir will be on.
	var st unix.Statfs_t
	for p := dir; ; p = filepath.Dir(p) {
		err := unix.Statfs(p, &st)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.ENOENT) || p == filepath.Dir(p) {
			return "", fmt.Errorf("pin directory %s: %w", dir, err)
		}
	}
	if st.Type != unix.BPF_FS_MAGIC {
		// In a container this is a host path volume of a directory that is
		// no bpffs mount on the node: pins there would not outlive it.
		return "", fmt.Errorf("pin directory %s: not on bpffs (mount it on the host, mount -t bpf bpf /sys/fs/bpf, "+
			"shared or slave for a container's HostToContainer volume: mount --make-shared /sys/fs/bpf)", dir)
	}
	return dir, nil
}

func mountBPFFS(at string) error {
	if err := os.MkdirAll(at, 0o700); err != nil {
		return fmt.Errorf("mount bpffs: %w", err)
	}
	if err := unix.Mount("bpf", at, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount bpffs at %s: %w", at, err)
	}
	return nil
}

// preflight turns a missing capability or kernel feature into an error
// naming it and the Linux version that has it, before loading fails with a
// less helpful one. It probes every feature the programs and the agent
// rely on, the newest (SO_NETNS_COOKIE, 5.14: egressd's minimum) first.
func preflight() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: loading and attaching BPF programs needs root with CAP_BPF and CAP_NET_ADMIN", ErrNotRoot)
	}
	if _, err := hostNetnsCookie(); err != nil {
		return err
	}
	helper := func(pt ebpf.ProgramType, fn asm.BuiltinFunc) func() error {
		return func() error { return features.HaveProgramHelper(pt, fn) }
	}
	probes := []struct {
		what string
		err  func() error
	}{
		{"cgroup sock_addr programs (Linux 4.17)", func() error { return features.HaveProgramType(ebpf.CGroupSockAddr) }},
		{"cgroup sock programs (Linux 4.10)", func() error { return features.HaveProgramType(ebpf.CGroupSock) }},
		{"sockops programs (Linux 4.13)", func() error { return features.HaveProgramType(ebpf.SockOps) }},
		{"hash maps (Linux 3.19)", func() error { return features.HaveMapType(ebpf.Hash) }},
		{"LRU hash maps (Linux 4.10)", func() error { return features.HaveMapType(ebpf.LRUHash) }},
		{"LPM trie maps (Linux 4.11)", func() error { return features.HaveMapType(ebpf.LPMTrie) }},
		{"per-CPU array maps (Linux 4.6)", func() error { return features.HaveMapType(ebpf.PerCPUArray) }},
		{"socket-local storage maps (Linux 5.2)", func() error { return features.HaveMapType(ebpf.SkStorage) }},
		{"bpf_get_socket_cookie in sock_addr programs (Linux 4.19)", helper(ebpf.CGroupSockAddr, asm.FnGetSocketCookie)},
		{"bpf_get_socket_cookie in sockops programs (Linux 4.19)", helper(ebpf.SockOps, asm.FnGetSocketCookie)},
		{"bpf_sk_storage_get in sock_addr programs (Linux 5.3)", helper(ebpf.CGroupSockAddr, asm.FnSkStorageGet)},
		{"bpf_sk_storage_get in sockops programs (Linux 5.3)", helper(ebpf.SockOps, asm.FnSkStorageGet)},
		{"bpf_sock_ops_cb_flags_set (Linux 4.16)", helper(ebpf.SockOps, asm.FnSockOpsCbFlagsSet)},
		{"bpf_get_netns_cookie in sock_addr programs (Linux 5.7)", helper(ebpf.CGroupSockAddr, asm.FnGetNetnsCookie)},
		{"bpf_get_current_cgroup_id in sock_addr programs (Linux 5.7)", helper(ebpf.CGroupSockAddr, asm.FnGetCurrentCgroupId)},
		{"lookup-and-delete on hash maps (Linux 5.14)", haveHashLookupAndDelete},
	}
	for _, p := range probes {
		if err := p.err(); err != nil {
			if errors.Is(err, ebpf.ErrNotSupported) {
				return fmt.Errorf("%w: needs %s: %v", ErrUnsupported, p.what, err)
			}
			if errors.Is(err, unix.EPERM) {
				return fmt.Errorf("%w: probe %s: %v (needs CAP_BPF, Linux 5.8, or CAP_SYS_ADMIN)", ErrNotRoot, p.what, err)
			}
			return fmt.Errorf("probe %s: %w (is BPF disabled?)", p.what, err)
		}
	}
	return nil
}

// haveHashLookupAndDelete probes BPF_MAP_LOOKUP_AND_DELETE_ELEM on a hash
// map (Lookup's one syscall per accepted connection): on a missing key the
// kernel says ENOENT if it supports the command for hash maps, EINVAL or
// ENOTSUPP before 5.14.
func haveHashLookupAndDelete() error {
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		return err
	}
	defer m.Close()
	var v uint32
	err = m.LookupAndDelete(uint32(0), &v)
	if err == nil || errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil
	}
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.Errno(524)) /* ENOTSUPP */ || errors.Is(err, ebpf.ErrNotSupported) {
		return fmt.Errorf("%w: %v", ebpf.ErrNotSupported, err)
	}
	return err
}

// removeMemlock lifts RLIMIT_MEMLOCK for kernels that still charge BPF
// memory to it (before 5.11, which charges the memory cgroup instead);
// raising it needs CAP_SYS_RESOURCE, which the DaemonSet does not grant.
func removeMemlock() error {
	err := rlimit.RemoveMemlock()
	if errors.Is(err, unix.EPERM) {
		return fmt.Errorf("%w: remove memlock limit: %v (kernels before Linux 5.11 charge BPF maps to RLIMIT_MEMLOCK: raising it needs CAP_SYS_RESOURCE)", ErrNotRoot, err)
	}
	if err != nil {
		return fmt.Errorf("remove memlock limit: %w", err)
	}
	return nil
}

// hostNetnsCookie returns the cookie of the agent's network namespace,
// which the programs compare sockets against.
func hostNetnsCookie() (uint64, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("netns cookie: %w", err)
	}
	defer unix.Close(fd)
	c, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if errors.Is(err, unix.ENOPROTOOPT) {
		return 0, fmt.Errorf("%w: needs SO_NETNS_COOKIE (Linux 5.14)", ErrUnsupported)
	}
	if err != nil {
		return 0, fmt.Errorf("netns cookie: %w", err)
	}
	return c, nil
}
