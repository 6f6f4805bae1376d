package kerneltest

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// Command returns a command that runs name with args inside cgroup (a
// cgroup v2 directory; "" for the caller's) and network namespace ns (nil
// for the caller's). The process is placed in the cgroup atomically at
// clone (no window outside it); the namespace is entered with
// nsenter --net, which execs name in place (same PID). Set Stdout, Stderr
// and Env as needed, then Start or Run.
//
// On cleanup, a process that is still running is killed by its PID. Do not
// call Wait concurrently with the test's end.
func Command(t testing.TB, cgroup string, ns *NS, name string, args ...string) *exec.Cmd {
	t.Helper()
	if ns != nil {
		args = append([]string{"--net=" + ns.Path, "--", name}, args...)
		name = "nsenter"
	}
	cmd := exec.Command(name, args...)
	if cgroup != "" {
		fd, err := os.Open(cgroup)
		if err != nil {
			t.Fatalf("command in cgroup: %v", err)
		}
		t.Cleanup(func() { fd.Close() })
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(fd.Fd())}
	}
	t.Cleanup(func() {
		if cmd.Process != nil && cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_, _ = cmd.Process.Wait()
		}
	})
	return cmd
}
