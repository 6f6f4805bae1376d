package kerneltest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/mounts"
)

// A MemoryCgroup is a throwaway cgroup with a memory limit, on cgroup v2
// when its hierarchy has the memory controller, else on the v1 memory
// hierarchy (hybrid hosts, where v2 often has no controller at all).
type MemoryCgroup struct {
	Dir string // the cgroup's directory
	V1  bool   // on the v1 memory hierarchy
	// Wrap is a command prefix that moves the process into the cgroup and
	// execs the rest of the command line (same PID): run a process with
	// Command(t, "", ns, Wrap[0], append(Wrap[1:], name, args...)...).
	Wrap []string
}

// MemoryLimited creates a cgroup whose processes may use at most limit
// bytes (memory.max, or memory.limit_in_bytes on v1, with swap off). On
// cleanup its processes are killed and it is removed.
func MemoryLimited(t testing.TB, limit int64) *MemoryCgroup {
	t.Helper()
	if root, err := mounts.Find("cgroup2"); err == nil && hasMemoryController(root) {
		dir := Cgroup(t)
		if err := os.WriteFile(filepath.Join(dir, "memory.max"), []byte(strconv.FormatInt(limit, 10)), 0); err != nil {
			t.Fatalf("memory cgroup: %v", err)
		}
		_ = os.WriteFile(filepath.Join(dir, "memory.swap.max"), []byte("0"), 0)
		return &MemoryCgroup{Dir: dir, Wrap: enterWrap(dir)}
	}
	root, err := mounts.FindCgroupV1("memory")
	if err != nil {
		t.Fatalf("memory cgroup: neither v2 with the memory controller nor v1: %v", err)
	}
	parent, err := selfV1Memory()
	if err != nil {
		t.Fatalf("memory cgroup: %v", err)
	}
	dir, err := os.MkdirTemp(filepath.Join(root, parent), "egressd-test-")
	if err != nil {
		t.Fatalf("memory cgroup: %v", err)
	}
	t.Cleanup(func() {
		killProcs(dir)
		deadline := time.Now().Add(5 * time.Second)
		for os.Remove(dir) != nil && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("memory cgroup %s left behind", dir)
		}
	})
	if err := os.WriteFile(filepath.Join(dir, "memory.limit_in_bytes"), []byte(strconv.FormatInt(limit, 10)), 0); err != nil {
		t.Fatalf("memory cgroup: %v", err)
	}
	_ = os.WriteFile(filepath.Join(dir, "memory.memsw.limit_in_bytes"), []byte(strconv.FormatInt(limit, 10)), 0)
	return &MemoryCgroup{Dir: dir, V1: true, Wrap: enterWrap(dir)}
}

// enterWrap: sh writes its own PID to the cgroup, then execs the command.
func enterWrap(dir string) []string {
	return []string{"sh", "-c", `echo $$ > "$0" && exec "$@"`, filepath.Join(dir, "cgroup.procs")}
}

func hasMemoryController(root string) bool {
	b, err := os.ReadFile(filepath.Join(root, "cgroup.subtree_control"))
	return err == nil && bytes.Contains(append(append([]byte(" "), bytes.TrimSpace(b)...), ' '), []byte(" memory "))
}

// selfV1Memory is this process's v1 memory cgroup path.
func selfV1Memory() (string, error) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) == 3 && strings.Contains(","+parts[1]+",", ",memory,") {
			return parts[2], nil
		}
	}
	return "", fmt.Errorf("no v1 memory cgroup in /proc/self/cgroup")
}

// Peak is the most memory the cgroup's processes used at once (bytes).
func (m *MemoryCgroup) Peak() int64 {
	name := "memory.peak"
	if m.V1 {
		name = "memory.max_usage_in_bytes"
	}
	b, _ := os.ReadFile(filepath.Join(m.Dir, name))
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}

// OOMKills is how many processes the kernel's OOM killer ended in it.
func (m *MemoryCgroup) OOMKills() int {
	name := "memory.events"
	if m.V1 {
		name = "memory.oom_control"
	}
	b, _ := os.ReadFile(filepath.Join(m.Dir, name))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}
