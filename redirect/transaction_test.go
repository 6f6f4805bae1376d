package redirect

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/egressd/egressd/internal/kerneltest"
)

// blockHook attaches a program to cg's hook exclusively (legacy attach
// without BPF_F_ALLOW_MULTI): egressd's link there then fails with EPERM.
func blockHook(t *testing.T, cg string, attach ebpf.AttachType) {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.CGroupSockAddr, AttachType: attach, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()},
	})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(cg)
	if err != nil {
		t.Fatal(err)
	}
	opts := link.RawAttachProgramOptions{Target: int(f.Fd()), Program: prog, Attach: attach}
	if err := link.RawAttachProgram(opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = link.RawDetachProgram(link.RawDetachProgramOptions{Target: opts.Target, Program: prog, Attach: attach})
		f.Close()
		prog.Close()
	})
}

// pinnedPrograms maps each pinned link to the program it runs.
func pinnedPrograms(t *testing.T, pinDir string) map[string]ebpf.ProgramID {
	t.Helper()
	out := map[string]ebpf.ProgramID{}
	entries, err := os.ReadDir(filepath.Join(pinDir, "links"))
	if errors.Is(err, os.ErrNotExist) {
		return out
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		l, err := link.LoadPinnedLink(filepath.Join(pinDir, "links", e.Name()), nil)
		if err != nil {
			t.Fatal(err)
		}
		info, err := l.Info()
		l.Close()
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = info.Program
	}
	return out
}

// An Attach whose link fails after others succeeded (cgroup 1's six
// hooks, then cgroup 2's sockops and connect4) leaves nothing of its own:
// no link, no pin; and in a takeover, the previous agent's links still
// run its programs.
func TestAttachIsAllOrNothing(t *testing.T) {
	tp := newTopo(t)
	cg2 := kerneltest.Cgroup(t)
	blockHook(t, cg2, ebpf.AttachCGroupInet6Connect)
	opts := tp.options()
	opts.Cgroups = []string{tp.cg, cg2}
	ext4 := hostPort(extAddr4, tp.extPort)

	_, err := Attach(opts)
	if err == nil || !strings.Contains(err.Error(), "connect6") {
		t.Fatalf("attach to a blocked hook: err = %v, want connect6's failure", err)
	}
	if _, err := os.Stat(tp.pinDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin directory left by a failed first attach: %v", err)
	}
	want(t, "after a failed attach", runChild(t, tp.cg, nil, job{Network: "tcp4", Addr: ext4, N: 2}), "direct")
	want(t, "after a failed attach, cgroup 2", runChild(t, cg2, nil, job{Network: "tcp4", Addr: ext4, N: 2}), "direct")

	// Takeover: the first agent holds cgroup 1; the second agent's
	// attach fails on cgroup 2.
	first := tp.attach(t, tp.options())
	before := pinnedPrograms(t, tp.pinDir)
	if _, err := Attach(opts); err == nil {
		t.Fatal("takeover attach to a blocked hook succeeded")
	}
	after := pinnedPrograms(t, tp.pinDir)
	if loaded := loadedHooks(first); len(after) != loaded || len(after) != len(before) {
		t.Errorf("pinned links %v after the failed takeover, want the first agent's %v", after, before)
	}
	for name, id := range before {
		if after[name] != id {
			t.Errorf("%s runs program %d after the failed takeover, was %d", name, after[name], id)
		}
	}
	if err := first.Check(); err != nil {
		t.Errorf("first agent after the failed takeover: %v", err)
	}
	want(t, "first agent still", runChild(t, tp.cg, nil, job{Network: "tcp4", Addr: ext4, N: 2}), "orig "+ext4)
	want(t, "cgroup 2 untouched", runChild(t, cg2, nil, job{Network: "tcp4", Addr: ext4, N: 2}), "direct")
}

// Check follows the links: nil while attached, an error naming the cause
// once they are detached by an uninstall.
func TestCheckSeesDetach(t *testing.T) {
	tp := newTopo(t)
	r := tp.attach(t, tp.options())
	if err := r.Check(); err != nil {
		t.Fatalf("attached: %v", err)
	}
	next := tp.attach(t, tp.options())
	if err := r.Check(); err == nil || !strings.Contains(err.Error(), "another agent") {
		t.Errorf("after a takeover: %v, want taken over", err)
	}
	if err := Uninstall(tp.pinDir); err != nil {
		t.Fatal(err)
	}
	if err := next.Check(); err == nil || !strings.Contains(err.Error(), "detached") {
		t.Errorf("after uninstall: %v, want detached", err)
	}
}

// One cgroup churns connects that are reset before the proxy accepts them,
// far more than conn_origs holds, while another makes requests: the victim
// loses none, and the churner leaves nothing behind.
func TestChurnEvictsNothing(t *testing.T) {
	tp := newTopo(t)
	churner := kerneltest.Cgroup(t)
	opts := tp.options()
	opts.Cgroups = []string{tp.cg, churner}
	r := tp.attach(t, opts)
	ext4 := hostPort(extAddr4, tp.extPort)

	wait := startChild(t, churner, tp.pod, job{Network: "tcp4-abandon", Addr: ext4, N: 70000, For: 3 * time.Second})
	victim := runChild(t, tp.cg, nil, job{Network: "tcp4", Addr: ext4, N: 1000, For: 2 * time.Second})
	churn := wait()
	want(t, "victim", victim, "orig "+ext4)
	t.Logf("victim: %d requests; churner: %v %v", victim.Replies["orig "+ext4], churn.Replies, churn.Errors)
	if n := churn.Replies["abandoned"]; n < 65536 {
		t.Errorf("the churner abandoned %d connects, fewer than conn_origs holds (65536): the test proves nothing", n)
	}
	s, err := r.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stats: tracked %d, untracked %d, track failed %d", s.Tracked, s.Untracked, s.TrackFailed)
	if s.TrackFailed != 0 {
		t.Errorf("%d connects could not be tracked", s.TrackFailed)
	}
	// Every abandoned connection's entry is gone (the proxy took the
	// others); allow for the last few the proxy is still accepting.
	if n := countEntries(t, r.objs.ConnOrigs); n > 100 {
		t.Errorf("conn_origs holds %d entries after the churn, want ~0", n)
	}
}

// loadedHooks counts the hooks r attaches to each cgroup: all of them but
// the optional guards that could not load here.
func loadedHooks(r *Redirector) int {
	n := 0
	for _, h := range hooks {
		if h.prog(r) != nil {
			n++
		}
	}
	return n
}
