package redirect

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// ExemptReason is why a cgroup is exempt: the programs leave its processes
// (its whole subtree) alone, as if they were not attached. A cgroup may be
// exempt for several reasons at once; it stays exempt until the last one
// is cleared.
type ExemptReason uint8

// The reasons, one bit each (the value of the exempt_cgroups map).
const (
	// ExemptFlag: Options.ExemptCgroups (--exempt-cgroup).
	ExemptFlag ExemptReason = 1 << iota
	// ExemptSelf: the agent's own cgroup (Options.ExemptSelf).
	ExemptSelf
	// ExemptNamespace: a pod in a namespace the operator exempted.
	ExemptNamespace
	// ExemptLabel: a pod carrying the exemption label.
	ExemptLabel
	// ExemptGateway: a pod of egressd's gateway, whose dials must not be
	// sent back to the agent.
	ExemptGateway
	// ExemptAgent: a pod of egressd's own agent.
	ExemptAgent
)

// ExemptReasons lists the reasons in bit order.
var ExemptReasons = []ExemptReason{ExemptFlag, ExemptSelf, ExemptNamespace, ExemptLabel, ExemptGateway, ExemptAgent}

var exemptNames = map[ExemptReason]string{
	ExemptFlag: "flag", ExemptSelf: "self", ExemptNamespace: "namespace",
	ExemptLabel: "label", ExemptGateway: "gateway", ExemptAgent: "agent",
}

// String names the reasons, joined by "+" ("label+gateway").
func (w ExemptReason) String() string {
	var names []string
	for _, r := range ExemptReasons {
		if w&r != 0 {
			names = append(names, exemptNames[r])
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, "+")
}

// exemptEntry is one exempt cgroup as the agent knows it.
type exemptEntry struct {
	path string // "": inherited from the previous agent's pinned map
	why  ExemptReason
}

// maxExempt is the size of exempt_cgroups (egressd.h).
const maxExempt = 16384

// CgroupID returns the cgroup v2 ID of the directory: its inode number,
// the ID bpf_get_current_cgroup_id returns and Origin reports.
func CgroupID(dir string) (uint64, error) {
	if err := checkCgroup(dir); err != nil {
		return 0, err
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return 0, fmt.Errorf("cgroup %s: %w", dir, err)
	}
	return st.Ino, nil
}

// loadExempt reads the exempt cgroups a previous agent left in the pinned
// map, so that they stay exempt until whoever owns their reasons says
// otherwise.
func (r *Redirector) loadExempt() error {
	r.exempt = map[uint64]exemptEntry{}
	var id uint64
	var why uint8
	it := r.objs.ExemptCgroups.Iterate()
	for it.Next(&id, &why) {
		r.exempt[id] = exemptEntry{why: ExemptReason(why)}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read exempt cgroups: %w", err)
	}
	r.exemptBefore = maps.Clone(r.exempt)
	return nil
}

// SetExempt gives (on) or takes away (off) the reason why from the cgroup
// id (path names it in logs). The cgroup is exempt as long as it has a
// reason; its becoming exempt or governed again is logged.
func (r *Redirector) SetExempt(id uint64, path string, why ExemptReason, on bool) error {
	r.exemptMu.Lock()
	defer r.exemptMu.Unlock()
	return r.setExemptLocked(id, path, why, on)
}

func (r *Redirector) setExemptLocked(id uint64, path string, why ExemptReason, on bool) error {
	e := r.exempt[id]
	if path != "" {
		e.path = path
	}
	was := e.why
	if on {
		e.why |= why
	} else {
		e.why &^= why
	}
	if e.why == was {
		r.exempt[id] = e
		if e.why == 0 {
			delete(r.exempt, id)
		}
		return nil
	}
	name := e.path
	if name == "" {
		name = "cgroup " + strconv.FormatUint(id, 10)
	}
	if e.why == 0 {
		if err := r.objs.ExemptCgroups.Delete(id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("redirect: exempt cgroup %s: %w", name, err)
		}
		delete(r.exempt, id)
		r.log.Info("cgroup no longer exempt: redirected again", "cgroup", name, "cgroup_id", id, "was", was.String())
		return nil
	}
	if was == 0 && len(r.exempt) >= maxExempt {
		return fmt.Errorf("redirect: exempt cgroup %s: %d cgroups exempt already, the most there can be", name, maxExempt)
	}
	if err := r.objs.ExemptCgroups.Put(id, uint8(e.why)); err != nil {
		return fmt.Errorf("redirect: exempt cgroup %s: %w", name, err)
	}
	r.exempt[id] = e
	if was == 0 {
		r.log.Info("cgroup exempt: not redirected", "cgroup", name, "cgroup_id", id, "reason", e.why.String())
	} else {
		r.log.Debug("cgroup exempt reasons changed", "cgroup", name, "cgroup_id", id, "reason", e.why.String())
	}
	return nil
}

// ReplaceExempt makes cgroups (ID to path) the set exempt for the reason
// why: the reason is given to each and taken from every other cgroup.
// Other reasons are untouched. An owner of a reason calls it once it knows
// the full set (at start, or once a watch has synced), and SetExempt for
// the changes after.
func (r *Redirector) ReplaceExempt(why ExemptReason, cgroups map[uint64]string) error {
	r.exemptMu.Lock()
	defer r.exemptMu.Unlock()
	var errs []error
	for id, e := range r.exempt {
		if _, keep := cgroups[id]; !keep && e.why&why != 0 {
			errs = append(errs, r.setExemptLocked(id, "", why, false))
		}
	}
	for id, path := range cgroups {
		errs = append(errs, r.setExemptLocked(id, path, why, true))
	}
	return errors.Join(errs...)
}

// ExemptCounts returns how many cgroups are exempt for each reason (a
// cgroup with two reasons counts under both).
func (r *Redirector) ExemptCounts() map[ExemptReason]int {
	r.exemptMu.Lock()
	defer r.exemptMu.Unlock()
	n := map[ExemptReason]int{}
	for _, w := range ExemptReasons {
		n[w] = 0
	}
	for _, e := range r.exempt {
		for _, w := range ExemptReasons {
			if e.why&w != 0 {
				n[w]++
			}
		}
	}
	return n
}

// ExemptWhy returns the reasons the cgroup id is exempt for (0: it is not
// exempt itself; an ancestor may be).
func (r *Redirector) ExemptWhy(id uint64) ExemptReason {
	r.exemptMu.Lock()
	defer r.exemptMu.Unlock()
	return r.exempt[id].why
}

// fillExempt applies the static reasons of this start (the flag and the
// agent's own cgroup), replacing those a previous agent left.
func (r *Redirector) fillExempt(s settings) error {
	flagged := map[uint64]string{}
	for _, dir := range s.ExemptCgroups {
		id, err := CgroupID(dir)
		if err != nil {
			return fmt.Errorf("exempt %w", err)
		}
		flagged[id] = dir
	}
	self := map[uint64]string{}
	if s.ExemptSelf {
		if dir, id, ok := r.selfExempt(s); ok {
			self[id] = dir
		}
	}
	if err := r.ReplaceExempt(ExemptFlag, flagged); err != nil {
		return err
	}
	return r.ReplaceExempt(ExemptSelf, self)
}

// checkExempt refuses an exempt cgroup that holds an attached one (it
// would exempt everything there) and warns of one outside them all (it
// exempts nothing: nothing is attached there).
func checkExempt(s settings) error {
	for _, ex := range s.ExemptCgroups {
		if err := checkCgroup(ex); err != nil {
			return fmt.Errorf("exempt %w", err)
		}
		under := false
		for _, cg := range s.Cgroups {
			switch {
			case within(cg, ex):
				return fmt.Errorf("exempt cgroup %s holds the attached cgroup %s: nothing there would be redirected (exempt a cgroup below it, or do not attach it)", ex, cg)
			case within(ex, cg):
				under = true
			}
		}
		if !under {
			s.Logger.Warn("exempt cgroup is outside every attached cgroup: it is not redirected anyway", "cgroup", ex)
		}
	}
	return nil
}

// within says whether cgroup directory dir is at or below top.
func within(dir, top string) bool {
	d, t := realPath(dir), realPath(top)
	return d == t || strings.HasPrefix(d, strings.TrimSuffix(t, "/")+"/")
}

func realPath(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		p = r
	}
	if a, err := filepath.Abs(p); err == nil {
		p = a
	}
	return filepath.Clean(p)
}

// selfExempt finds the agent's own cgroup and says whether exempting it is
// right: only when it lies strictly below an attached cgroup (elsewhere
// the programs do not see it), holds no attached cgroup (that would exempt
// the workloads), and holds no process but this agent (a shell or a test
// harness sharing it would be exempted with it). The agent's own sockets
// are recognised by their cookie either way; the exemption covers what
// does not go through its dialers (the Kubernetes client's connections,
// say).
func (r *Redirector) selfExempt(s settings) (dir string, id uint64, ok bool) {
	dir, err := selfCgroup(s.Cgroups)
	if err != nil || dir == "" {
		r.log.Debug("own cgroup not exempt: not found below an attached cgroup", "error", err)
		return "", 0, false
	}
	below := false
	for _, cg := range s.Cgroups {
		if within(cg, dir) {
			r.log.Info("own cgroup not exempt: it holds an attached cgroup", "cgroup", dir, "attached", cg)
			return "", 0, false
		}
		below = below || within(dir, cg)
	}
	if !below {
		return "", 0, false
	}
	pids, err := cgroupPids(dir)
	if err != nil || !slices.Equal(pids, []int{os.Getpid()}) {
		r.log.Info("own cgroup not exempt: other processes share it", "cgroup", dir, "pids", len(pids), "error", err)
		return "", 0, false
	}
	id, err = CgroupID(dir)
	if err != nil {
		r.log.Warn("own cgroup not exempt", "cgroup", dir, "error", err)
		return "", 0, false
	}
	return dir, id, true
}

// selfCgroup returns the directory of the agent's cgroup v2: the path in
// /proc/self/cgroup under the cgroup2 mount when it holds this process;
// otherwise (a container's private cgroup namespace, where that path is
// "/", and the host's hierarchy mounted) the cgroup below one of tops
// whose cgroup.procs lists this process. "": not found.
func selfCgroup(tops []string) (string, error) {
	pid := os.Getpid()
	if rel, err := procCgroup(); err == nil {
		if mnt, err := CgroupV2Mount(); err == nil {
			dir := filepath.Join(mnt, rel)
			if pids, err := cgroupPids(dir); err == nil && slices.Contains(pids, pid) {
				return dir, nil
			}
		}
	}
	var found string
	seen := 0
	for _, top := range tops {
		err := filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			if seen++; seen > 100000 {
				return fs.SkipAll
			}
			if pids, err := cgroupPids(p); err == nil && slices.Contains(pids, pid) {
				found = p
				return fs.SkipAll
			}
			return nil
		})
		if err != nil {
			return "", err
		}
		if found != "" {
			return found, nil
		}
	}
	return "", nil
}

// procCgroup returns this process's cgroup v2 path ("0::" line).
func procCgroup() (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			return rest, nil
		}
	}
	return "", errors.New("no cgroup v2 line in /proc/self/cgroup")
}

// cgroupPids lists the processes in the cgroup directory (not its
// children), as this process's PID namespace numbers them.
func cgroupPids(dir string) ([]int, error) {
	f, err := os.Open(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var pids []int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if n, err := strconv.Atoi(strings.TrimSpace(sc.Text())); err == nil && n > 0 {
			pids = append(pids, n)
		}
	}
	return pids, sc.Err()
}

// restoreExempt puts exempt_cgroups back as Attach found it.
func (r *Redirector) restoreExempt() {
	r.exemptMu.Lock()
	defer r.exemptMu.Unlock()
	if r.exempt == nil || r.objs.ExemptCgroups == nil {
		return
	}
	for id := range r.exempt {
		if _, ok := r.exemptBefore[id]; !ok {
			_ = r.objs.ExemptCgroups.Delete(id)
		}
	}
	for id, e := range r.exemptBefore {
		_ = r.objs.ExemptCgroups.Put(id, uint8(e.why))
	}
	r.exempt = r.exemptBefore
}
