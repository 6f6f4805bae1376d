package limits

import (
	"os"
	"path/filepath"
	"testing"
)

func TestMemoryFlag(t *testing.T) {
	for in, want := range map[string]int64{"auto": 0, "1024": 1024, "64KiB": 64 << 10, "2GiB": 2 << 30, "7B": 7} {
		var m Memory
		if err := m.Set(in); err != nil || m.Bytes != want {
			t.Errorf("--memory-limit %s = %+v, %v; want %d bytes", in, m, err, want)
		}
	}
}

func TestAutoMaxConns(t *testing.T) {
	for nofile, want := range map[uint64]int{1024: 256, 20000: 9488, 1 << 20: 16384} {
		if got := AutoMaxConns(nofile); got != want {
			t.Errorf("AutoMaxConns(%d) = %d, want %d", nofile, got, want)
		}
	}
}

func TestCgroupMemoryLimitFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A hybrid host: v2 for systemd only, memory on v1.
	write("self", "9:name=systemd:/\n4:memory:/kubepods/pod1/ctr\n0::/kubepods/pod1/ctr\n")
	v2, v1, err := selfCgroups(filepath.Join(dir, "self"))
	if err != nil || v2 != "/kubepods/pod1/ctr" || v1 != "/kubepods/pod1/ctr" {
		t.Fatalf("selfCgroups = %q %q %v", v2, v1, err)
	}
	// The lowest limit on the path wins (a pod's below its container's).
	write("mem/kubepods/memory.max", "max\n")
	write("mem/kubepods/pod1/memory.max", "268435456\n")
	write("mem/kubepods/pod1/ctr/memory.max", "536870912\n")
	got, where, err := lowestLimit(filepath.Join(dir, "mem"), "/kubepods/pod1/ctr", "memory.max")
	if err != nil || got != 256<<20 || where != filepath.Join(dir, "mem/kubepods/pod1/memory.max") {
		t.Errorf("lowestLimit = %d %q %v", got, where, err)
	}
	// v1's "no limit" is MaxInt64 rounded to a page.
	write("v1/a/memory.limit_in_bytes", "9223372036854771712\n")
	if got, _, err := lowestLimit(filepath.Join(dir, "v1"), "/a", "memory.limit_in_bytes"); err != nil || got != 0 {
		t.Errorf("unlimited v1 = %d, %v", got, err)
	}
	if _, _, err := lowestLimit(filepath.Join(dir, "v1"), "/gone", "memory.limit_in_bytes"); err == nil {
		t.Error("a missing cgroup is no error")
	}
	write("v2/cgroup.controllers", "cpu io memory pids\n")
	if !hasController(filepath.Join(dir, "v2"), "memory") || hasController(filepath.Join(dir, "v2"), "mem") {
		t.Error("hasController")
	}
}
