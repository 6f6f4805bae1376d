package kerneltest

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/mounts"
)

// Cgroup creates a throwaway cgroup v2 directory under the cgroup2 mount
// and returns its path. On cleanup the processes in it are killed and the
// directory is removed, with any child cgroups a test made in it.
func Cgroup(t testing.TB) string {
	t.Helper()
	root, err := mounts.Find("cgroup2")
	if err != nil {
		t.Fatalf("cgroup: %v", err)
	}
	dir, err := os.MkdirTemp(root, "egressd-test-")
	if err != nil {
		t.Fatalf("cgroup: %v", err)
	}
	t.Cleanup(func() {
		if err := removeCgroup(dir); err != nil {
			t.Errorf("remove cgroup: %v", err)
		}
	})
	return dir
}

// removeCgroup kills every process in dir and removes it. It waits up to
// five seconds (scaled) for the kernel to reap the processes.
func removeCgroup(dir string) error {
	// cgroup.kill (5.14+) kills the whole subtree atomically; fall back to
	// signalling the listed PIDs on older kernels.
	if err := os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0); err != nil {
		killProcs(dir)
	}
	// Child cgroups (a test's "pods") go first, deepest first.
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	deadline := time.Now().Add(Scale(5 * time.Second))
	for i := len(dirs) - 1; i >= 0; i-- {
		for {
			err := os.Remove(dirs[i])
			if err == nil || errors.Is(err, os.ErrNotExist) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: %w", dirs[i], err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return nil
}

func killProcs(dir string) {
	b, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	for _, f := range bytes.Fields(b) {
		if pid, err := strconv.Atoi(string(f)); err == nil {
			if p, err := os.FindProcess(pid); err == nil {
				_ = p.Kill()
			}
		}
	}
}
