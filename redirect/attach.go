package redirect

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/egressd/egressd/bpf"
)

// Redirector owns the loaded programs and maps of one agent. Its methods
// are safe for concurrent use.
type Redirector struct {
	objs   bpf.EgressdObjects
	links  []link.Link
	pinDir string
	log    *slog.Logger

	closeMu sync.Mutex
	closed  bool
}

// hook is one program and where it attaches in a cgroup.
type hook struct {
	name   string
	attach ebpf.AttachType
	prog   func(*bpf.EgressdPrograms) *ebpf.Program
}

// hooks in attach order: sockops first, so that a connect the new connect
// hooks redirect is always tracked.
var hooks = []hook{
	{"track_connect", ebpf.AttachCGroupSockOps, func(p *bpf.EgressdPrograms) *ebpf.Program { return p.TrackConnect }},
	{"connect4", ebpf.AttachCGroupInet4Connect, func(p *bpf.EgressdPrograms) *ebpf.Program { return p.Connect4 }},
	{"connect6", ebpf.AttachCGroupInet6Connect, func(p *bpf.EgressdPrograms) *ebpf.Program { return p.Connect6 }},
	{"sendmsg4", ebpf.AttachCGroupUDP4Sendmsg, func(p *bpf.EgressdPrograms) *ebpf.Program { return p.Sendmsg4 }},
	{"sendmsg6", ebpf.AttachCGroupUDP6Sendmsg, func(p *bpf.EgressdPrograms) *ebpf.Program { return p.Sendmsg6 }},
}

// Attach loads the programs configured by opts and attaches them to
// opts.Cgroups, taking over the links and maps pinned by a previous agent
// (see the package doc). Cgroups pinned before but not in opts.Cgroups are
// detached.
func Attach(opts Options) (_ *Redirector, err error) {
	s, err := opts.settings()
	if err != nil {
		return nil, fmt.Errorf("redirect: %w", err)
	}
	if err := preflight(); err != nil {
		return nil, fmt.Errorf("redirect: %w", err)
	}
	for _, cg := range s.Cgroups {
		if err := checkCgroup(cg); err != nil {
			return nil, fmt.Errorf("redirect: %w", err)
		}
	}
	dir, err := pinDir(s.PinDir, true)
	if err != nil {
		return nil, fmt.Errorf("redirect: %w", err)
	}
	r := &Redirector{pinDir: dir, log: s.Logger}
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	if err := r.load(s); err != nil {
		return nil, fmt.Errorf("redirect: %w", err)
	}
	wanted := map[string]bool{}
	for _, cg := range s.Cgroups {
		if err := r.attachCgroup(cg, wanted); err != nil {
			return nil, fmt.Errorf("redirect: %w", err)
		}
	}
	if err := detachUnwanted(filepath.Join(dir, "links"), wanted, r.log); err != nil {
		return nil, fmt.Errorf("redirect: %w", err)
	}
	return r, nil
}

// load loads the programs with their settings, reusing pinned maps, and
// fills the excluded CIDRs.
func (r *Redirector) load(s settings) error {
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("remove memlock limit: %w", err)
	}
	cookie, err := hostNetnsCookie()
	if err != nil {
		return err
	}
	spec, err := bpf.LoadEgressd()
	if err != nil {
		return err
	}
	if err := setVariables(spec, s, cookie); err != nil {
		return err
	}
	maps := filepath.Join(r.pinDir, "maps")
	if err := os.MkdirAll(maps, 0o700); err != nil {
		return fmt.Errorf("pin directory: %w", err)
	}
	err = spec.LoadAndAssign(&r.objs, &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: maps}})
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		return fmt.Errorf("load BPF objects: %w (pinned by another egressd version: uninstall it, or use another pin directory)", err)
	}
	if errors.Is(err, ebpf.ErrNotSupported) {
		return fmt.Errorf("%w: load BPF objects: %v", ErrUnsupported, err)
	}
	if err != nil {
		return fmt.Errorf("load BPF objects: %w", err)
	}
	return r.fillExcluded(s.ExcludeCIDRs)
}

// fillExcluded writes the excluded CIDRs. An IPv6 prefix that contains
// the v4-mapped range (::/0, say) must not exclude all of IPv4: the
// range ::ffff:0:0/96 is entered as not excluded first, the longer match
// for IPv4 destinations unless 0.0.0.0/0 itself is excluded.
func (r *Redirector) fillExcluded(cidrs []netip.Prefix) error {
	v4 := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	if err := r.objs.Excluded.Put(lpmKey(v4), uint8(0)); err != nil {
		return fmt.Errorf("exclude: %w", err)
	}
	for _, p := range cidrs {
		if err := r.objs.Excluded.Put(lpmKey(p), uint8(1)); err != nil {
			return fmt.Errorf("exclude %v: %w", p, err)
		}
	}
	return nil
}

// attachCgroup attaches every hook to cg, or switches its pinned link to
// the new program, and adds the pin names to wanted.
func (r *Redirector) attachCgroup(cg string, wanted map[string]bool) error {
	var st unix.Stat_t
	if err := unix.Stat(cg, &st); err != nil {
		return fmt.Errorf("cgroup %s: %w", cg, err)
	}
	links := filepath.Join(r.pinDir, "links")
	if err := os.MkdirAll(links, 0o700); err != nil {
		return fmt.Errorf("pin directory: %w", err)
	}
	for _, h := range hooks {
		// The inode number is the cgroup's ID: it names the cgroup
		// however it is spelled.
		name := fmt.Sprintf("%s-cgroup%d", h.name, st.Ino)
		wanted[name] = true
		l, err := r.attachHook(cg, filepath.Join(links, name), h)
		if err != nil {
			return fmt.Errorf("attach %s to %s: %w", h.name, cg, err)
		}
		r.links = append(r.links, l)
	}
	return nil
}

func (r *Redirector) attachHook(cg, pin string, h hook) (link.Link, error) {
	prog := h.prog(&r.objs.EgressdPrograms)
	l, err := link.LoadPinnedLink(pin, nil)
	switch {
	case err == nil:
		// Atomic: the cgroup runs the old program until this returns,
		// the new one afterwards.
		if err := l.Update(prog); err != nil {
			l.Close()
			return nil, fmt.Errorf("update pinned link: %w", err)
		}
		r.log.Debug("took over pinned link", "pin", pin)
		return l, nil
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("load pinned link: %w", err)
	}
	l, err = link.AttachCgroup(link.CgroupOptions{Path: cg, Attach: h.attach, Program: prog})
	if err != nil {
		return nil, err
	}
	if err := l.Pin(pin); err != nil {
		l.Close()
		if errors.Is(err, link.ErrNotSupported) {
			return nil, fmt.Errorf("%w: needs cgroup BPF links (Linux 5.7): %v", ErrUnsupported, err)
		}
		return nil, err
	}
	r.log.Debug("attached", "cgroup", cg, "pin", pin)
	return l, nil
}

// setVariables writes the settings into the programs' volatile consts.
func setVariables(spec *ebpf.CollectionSpec, s settings, hostNetns uint64) error {
	var vars bpf.EgressdVariableSpecs
	if err := spec.Assign(&vars); err != nil {
		return err
	}
	var node4 [4]byte
	var node6 [16]byte
	if s.node4.IsValid() {
		node4 = s.node4.As4()
	}
	if s.node6.IsValid() {
		node6 = s.node6.As16()
	}
	for _, v := range []struct {
		spec  *ebpf.VariableSpec
		value any
	}{
		{vars.ProxyPort, s.ProxyPort},
		{vars.SockMark, s.Mark},
		{vars.HostNetnsCookie, hostNetns},
		{vars.NodeIp4, node4}, // network order, as the bytes are
		{vars.NodeIp6, node6},
		{vars.DenyUdp, boolU32(s.DenyUDP)},
	} {
		if err := v.spec.Set(v.value); err != nil {
			return fmt.Errorf("set %s: %w", v.spec.Name, err)
		}
	}
	return nil
}

func boolU32(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}
