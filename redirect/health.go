package redirect

import (
	"errors"
	"fmt"
)

// Check reports whether every link of this agent is still attached and
// runs this agent's program: nil while they are; otherwise an error naming
// the first that is not (detached by `egressd run --uninstall` or another
// tool, its cgroup removed, or taken over by another agent). It makes a
// few system calls per link; call it from a readiness probe, not per
// connection.
func (r *Redirector) Check() error {
	r.closeMu.Lock()
	defer r.closeMu.Unlock()
	if r.closed {
		return errors.New("redirect: closed")
	}
	for _, a := range r.links {
		info, err := a.l.Info()
		if err != nil {
			return fmt.Errorf("%s of %s: link info: %w", a.hook, a.cgroup, err)
		}
		cg := info.Cgroup()
		if cg == nil || cg.CgroupId == 0 {
			return fmt.Errorf("%s of %s: detached (egressd run --uninstall, or the cgroup was removed)", a.hook, a.cgroup)
		}
		if a.prog != 0 && info.Program != a.prog {
			return fmt.Errorf("%s of %s: runs program %d, not this agent's %d (taken over by another agent?)", a.hook, a.cgroup, info.Program, a.prog)
		}
	}
	return nil
}
