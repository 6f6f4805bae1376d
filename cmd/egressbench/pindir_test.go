package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/egressd/egressd/internal/kerneltest"
	"github.com/egressd/egressd/internal/mounts"
)

// pinDirChildEnv makes TestPinDirWithoutBPFFS run its checks, in the
// private mount namespace its parent started it in.
const pinDirChildEnv = "EGRESSBENCH_PINDIR_CHILD"

// Where no bpffs is mounted when egressbench starts, a case still gets a
// pin directory of its own on bpffs (mounted for it), so its cleanup runs
// --uninstall; it used to get none, and egressd pinned under the default
// <bpffs>/egressd, left behind for the next `egressd run`. The checks run
// in a private mount namespace with every bpffs unmounted, so the host's
// mounts are untouched.
func TestPinDirWithoutBPFFS(t *testing.T) {
	if os.Getenv(pinDirChildEnv) == "1" {
		checkPinDirWithoutBPFFS(t)
		return
	}
	kerneltest.Require(t)
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", os.Args[0], "-test.run=^TestPinDirWithoutBPFFS$", "-test.v")
	cmd.Env = append(os.Environ(), pinDirChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestPinDirWithoutBPFFS") {
		t.Fatalf("in a private mount namespace: %v\n%s", err, out)
	}
}

func checkPinDirWithoutBPFFS(t *testing.T) {
	for range 8 { // stacked mounts: unmount until none is left
		fs, err := mounts.Find("bpf")
		if err != nil {
			break
		}
		if err := unix.Unmount(fs, unix.MNT_DETACH); err != nil {
			t.Fatalf("unmount bpffs at %s: %v", fs, err)
		}
	}
	if fs, err := mounts.Find("bpf"); err == nil {
		t.Fatalf("bpffs still mounted at %s", fs)
	}
	dir, err := benchPinDir("egressd-1")
	if err != nil {
		t.Fatalf("benchPinDir: %v", err)
	}
	fs, err := mounts.Find("bpf")
	if err != nil {
		t.Fatalf("no bpffs mounted after benchPinDir: %v", err)
	}
	if filepath.Dir(dir) != fs || !strings.HasPrefix(filepath.Base(dir), "egressbench-") || dir == filepath.Join(fs, "egressd") {
		t.Fatalf("pin directory %q, want egressbench-<pid>-egressd-1 on the bpffs at %s", dir, fs)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Dir(dir), &st); err != nil || st.Type != unix.BPF_FS_MAGIC {
		t.Fatalf("%s: statfs %v, type %#x; want bpffs", filepath.Dir(dir), err, st.Type)
	}
}
