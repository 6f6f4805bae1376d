package redirect

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/egressd/egressd/bpf"
)

// Redirector owns the loaded programs and maps of one agent. Its methods
// are safe for concurrent use.
type Redirector struct {
	objs   bpf.EgressdObjects
	guard  bpf.GuardPrograms // the optional guards loaded; a nil one: see guards
	guards Guards
	links  []attached
	pinDir string
	log    *slog.Logger

	lookupMisses, lookupErrors atomic.Uint64

	exemptMu sync.Mutex
	exempt   map[uint64]exemptEntry // what exempt_cgroups holds
	// exemptBefore is exempt_cgroups as this Attach found it, put back if
	// the attach fails (the map is shared with the previous agent).
	exemptBefore map[uint64]exemptEntry

	closeMu sync.Mutex
	closed  bool
}

// attached is one of the agent's links: a program in a cgroup.
type attached struct {
	l      link.Link
	cgroup string
	hook   string
	prog   ebpf.ProgramID // 0: unknown
}

func newAttached(l link.Link, p plannedLink, prog *ebpf.Program) attached {
	a := attached{l: l, cgroup: p.cgroup, hook: p.h.name}
	if info, err := prog.Info(); err == nil {
		a.prog, _ = info.ID()
	}
	return a
}

// hook is one program and where it attaches in a cgroup.
type hook struct {
	name   string
	attach ebpf.AttachType
	prog   func(*Redirector) *ebpf.Program // nil: not loaded, not attached
}

// hooks in attach order: sockops first, so that a connect the new connect
// hooks redirect is always tracked.
var hooks = []hook{
	{"track_connect", ebpf.AttachCGroupSockOps, func(r *Redirector) *ebpf.Program { return r.objs.TrackConnect }},
	{"connect4", ebpf.AttachCGroupInet4Connect, func(r *Redirector) *ebpf.Program { return r.objs.Connect4 }},
	{"connect6", ebpf.AttachCGroupInet6Connect, func(r *Redirector) *ebpf.Program { return r.objs.Connect6 }},
	{"sendmsg4", ebpf.AttachCGroupUDP4Sendmsg, func(r *Redirector) *ebpf.Program { return r.objs.Sendmsg4 }},
	{"sendmsg6", ebpf.AttachCGroupUDP6Sendmsg, func(r *Redirector) *ebpf.Program { return r.objs.Sendmsg6 }},
	{"sock_create", ebpf.AttachCGroupInetSockCreate, func(r *Redirector) *ebpf.Program { return r.objs.SockCreate }},
	{"source_route", ebpf.AttachCGroupInetEgress, func(r *Redirector) *ebpf.Program { return r.guard.SourceRoute }},
	{"packet_guard", ebpf.AttachLSMCgroup, func(r *Redirector) *ebpf.Program { return r.guard.PacketGuard }},
}

// Attach loads the programs configured by opts and attaches them to
// opts.Cgroups, taking over the links and maps pinned by a previous agent
// (see the package doc). Cgroups pinned before but not in opts.Cgroups are
// detached. It is all or nothing: on error, nothing this call attached
// stays attached, no pin it made is left, and the previous agent's links
// still run its programs (unless switching one of them failed; see the
// package doc).
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
	if err := checkExempt(s); err != nil {
		return nil, fmt.Errorf("redirect: %w", err)
	}
	dir, err := pinDir(s.PinDir, true)
	if err != nil {
		return nil, fmt.Errorf("redirect: %w", err)
	}
	undo, err := notePins(dir)
	if err != nil {
		return nil, fmt.Errorf("redirect: %w", err)
	}
	r := &Redirector{pinDir: dir, log: s.Logger}
	defer func() {
		if err != nil {
			r.restoreExempt()
			r.Close()
			undo()
		}
	}()
	if err := r.load(s); err != nil {
		return nil, fmt.Errorf("redirect: %w", err)
	}
	wanted, err := r.attachAll(s.Cgroups)
	if err != nil {
		return nil, fmt.Errorf("redirect: %w", err)
	}
	if err := detachUnwanted(filepath.Join(dir, "links"), wanted, r.log); err != nil {
		return nil, fmt.Errorf("redirect: %w", err)
	}
	removeStalePins(filepath.Join(dir, "maps"), r.log)
	return r, nil
}

// load loads the programs with their settings, reusing pinned maps, and
// fills the excluded CIDRs, resolvers and UDP rules.
func (r *Redirector) load(s settings) error {
	if err := removeMemlock(); err != nil {
		return err
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
	r.loadGuards()
	return r.fill(s)
}

// plannedLink is one hook of one cgroup, before it is attached.
type plannedLink struct {
	cgroup string
	h      hook
	pin    string
	old    link.Link // the previous agent's pinned link; nil: none
}

// attachAll attaches every hook to every cgroup in two phases: first the
// new links (attached and pinned), undone all together if one fails; then
// the previous agent's pinned links switched to the new programs. It
// returns the pin names in use.
func (r *Redirector) attachAll(cgroups []string) (map[string]bool, error) {
	plan, wanted, err := r.plan(cgroups)
	if err != nil {
		return nil, err
	}
	var fresh []attached
	undo := func() {
		for _, a := range fresh {
			_ = a.l.Unpin()
			_ = a.l.Close() // unpinned and closed: detached
		}
		for _, p := range plan {
			if p.old != nil {
				p.old.Close() // still pinned: stays attached with its program
			}
		}
	}
	for _, p := range plan {
		if p.old != nil {
			continue
		}
		l, err := r.attachNew(p)
		if err != nil {
			undo()
			return nil, fmt.Errorf("attach %s to %s: %w", p.h.name, p.cgroup, err)
		}
		fresh = append(fresh, newAttached(l, p, p.h.prog(r)))
	}
	r.links = append(r.links, fresh...)
	for i, p := range plan {
		if p.old == nil {
			continue
		}
		// Atomic: the cgroup runs the old program until this returns,
		// the new one afterwards.
		prog := p.h.prog(r)
		if err := p.old.Update(prog); err != nil {
			r.links = r.links[len(fresh):] // those switched already: Close releases them, their pins stay
			undo()
			return nil, fmt.Errorf("take over %s of %s: %w", p.h.name, p.cgroup, err)
		}
		plan[i].old = nil
		r.links = append(r.links, newAttached(p.old, p, prog))
		r.log.Debug("took over pinned link", "pin", p.pin)
	}
	return wanted, nil
}

// plan lists the links to make and loads the pinned ones to take over.
func (r *Redirector) plan(cgroups []string) ([]plannedLink, map[string]bool, error) {
	links := filepath.Join(r.pinDir, "links")
	if err := os.MkdirAll(links, 0o700); err != nil {
		return nil, nil, fmt.Errorf("pin directory: %w", err)
	}
	var plan []plannedLink
	wanted := map[string]bool{}
	fail := func(err error) ([]plannedLink, map[string]bool, error) {
		for _, p := range plan {
			if p.old != nil {
				p.old.Close()
			}
		}
		return nil, nil, err
	}
	for _, cg := range cgroups {
		var st unix.Stat_t
		if err := unix.Stat(cg, &st); err != nil {
			return fail(fmt.Errorf("cgroup %s: %w", cg, err))
		}
		for _, h := range hooks {
			if h.prog(r) == nil {
				continue // optional and not loaded: a previous agent's pin of it is detached
			}
			// The inode number is the cgroup's ID: it names the cgroup
			// however it is spelled.
			name := fmt.Sprintf("%s-cgroup%d", h.name, st.Ino)
			if wanted[name] {
				continue // the same cgroup twice
			}
			wanted[name] = true
			p := plannedLink{cgroup: cg, h: h, pin: filepath.Join(links, name)}
			l, err := link.LoadPinnedLink(p.pin, nil)
			switch {
			case err == nil:
				p.old = l
			case !errors.Is(err, os.ErrNotExist):
				return fail(fmt.Errorf("load pinned link %s: %w", p.pin, err))
			}
			plan = append(plan, p)
		}
	}
	return plan, wanted, nil
}

func (r *Redirector) attachNew(p plannedLink) (link.Link, error) {
	l, err := link.AttachCgroup(link.CgroupOptions{Path: p.cgroup, Attach: p.h.attach, Program: p.h.prog(r)})
	if err != nil {
		return nil, err
	}
	if err := l.Pin(p.pin); err != nil {
		l.Close()
		if errors.Is(err, link.ErrNotSupported) {
			return nil, fmt.Errorf("%w: needs cgroup BPF links (Linux 5.7): %v", ErrUnsupported, err)
		}
		return nil, err
	}
	r.log.Debug("attached", "cgroup", p.cgroup, "pin", p.pin)
	return l, nil
}

// notePins records what exists under the pin directory dir; the returned
// func removes whatever Attach added since (maps pinned by this load,
// directories it made), on failure.
func notePins(dir string) (undo func(), err error) {
	before := map[string]bool{}
	for _, sub := range []string{"", "maps", "links"} {
		p := filepath.Join(dir, sub)
		if _, err := os.Stat(p); err == nil {
			before[p] = true
		}
		entries, err := os.ReadDir(p)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("pin directory: %w", err)
		}
		for _, e := range entries {
			before[filepath.Join(p, e.Name())] = true
		}
	}
	return func() {
		for _, sub := range []string{"maps", "links"} {
			p := filepath.Join(dir, sub)
			entries, _ := os.ReadDir(p)
			for _, e := range entries {
				if q := filepath.Join(p, e.Name()); !before[q] {
					_ = os.Remove(q)
				}
			}
		}
		for _, p := range []string{filepath.Join(dir, "maps"), filepath.Join(dir, "links"), dir} {
			if !before[p] {
				_ = os.Remove(p) // only if empty
			}
		}
	}, nil
}

// staleMaps are maps earlier versions pinned and this one no longer uses.
var staleMaps = []string{"pending", "orig_dsts"}

// removeStalePins unpins maps of earlier versions once their programs are
// replaced everywhere (a previous agent still holding them keeps them
// alive until it exits).
func removeStalePins(maps string, log *slog.Logger) {
	for _, name := range staleMaps {
		if err := os.Remove(filepath.Join(maps, name)); err == nil {
			log.Info("removed the pin of an earlier version's map", "map", name)
		}
	}
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
		{vars.HostNetnsCookie, hostNetns},
		{vars.NodeIp4, node4}, // network order, as the bytes are
		{vars.NodeIp6, node6},
	} {
		if err := v.spec.Set(v.value); err != nil {
			return fmt.Errorf("set %s: %w", v.spec.Name, err)
		}
	}
	return nil
}
