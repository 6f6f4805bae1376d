// Package kerneltest provides fixtures for tests that run against the real
// kernel: a gate that skips (or fails) when the machine can't run them, and
// throwaway cgroups, network namespaces, veth links and processes placed in
// them.
//
// Every fixture registers its own removal with t.Cleanup, so it is undone
// also when the test fails. Cleanups run in reverse order: create the cgroup
// and namespaces before starting processes in them.
//
// Lifecycle traps:
//   - Require must be called first in every kernel test; the fixtures
//     assume root.
//   - A socket keeps the network namespace it was created in. Create
//     listeners inside (*NS).Do; goroutines started there run in the
//     caller's namespace, not the NS.
//   - Tests that add host addresses or routes (Veth with a host end) hold
//     LockHost, so kernel tests of different packages take turns.
//   - The test process itself must stay outside test cgroups (attached BPF
//     programs would apply to it); put child processes there with Command.
package kerneltest

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"

	"github.com/egressd/egressd/internal/mounts"
)

// RequireEnv is the environment variable that turns skips into failures
// when set to "require" (CI sets it so it can't pass without the kernel).
const RequireEnv = "EGRESSD_E2E"

// Require skips the test, with the reason, unless it runs as root on a
// kernel with cgroup v2 mounted and cgroup sock_addr BPF programs
// available. With EGRESSD_E2E=require it fails instead of skipping.
func Require(t testing.TB) {
	t.Helper()
	if err := check(); err != nil {
		if os.Getenv(RequireEnv) == "require" {
			t.Fatalf("kernel test can't run (%s=require): %v", RequireEnv, err)
		}
		t.Skipf("kernel test skipped: %v", err)
	}
}

// check reports what is missing for kernel tests, or nil.
func check() error {
	if os.Geteuid() != 0 {
		return errors.New("not running as root")
	}
	if _, err := mounts.Find("cgroup2"); err != nil {
		return fmt.Errorf("no cgroup v2: %w", err)
	}
	if err := features.HaveProgramType(ebpf.CGroupSockAddr); err != nil {
		return fmt.Errorf("BPF cgroup sock_addr programs unavailable: %w", err)
	}
	return nil
}
