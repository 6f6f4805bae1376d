package mounts

import (
	"errors"
	"strings"
	"testing"
)

func TestFind(t *testing.T) {
	const hybrid = `tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
bpf /sys/fs/bpf bpf rw 0 0
`
	const unified = "cgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate 0 0\n"
	const spaced = "none /mnt/my\\040bpf bpf rw 0 0\n"
	tests := []struct {
		name, mounts, fstype, want string
	}{
		{"hybrid", hybrid, "cgroup2", "/sys/fs/cgroup/unified"},
		{"unified", unified, "cgroup2", "/sys/fs/cgroup"},
		{"bpffs", hybrid, "bpf", "/sys/fs/bpf"},
		{"escaped", spaced, "bpf", "/mnt/my bpf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := find(strings.NewReader(tt.mounts), tt.fstype)
			if err != nil || got != tt.want {
				t.Fatalf("find(%s) = %q, %v; want %q", tt.fstype, got, err, tt.want)
			}
		})
	}
	if _, err := find(strings.NewReader(unified), "bpf"); !errors.Is(err, ErrNotMounted) {
		t.Fatalf("missing bpffs: err = %v, want ErrNotMounted", err)
	}
}

func TestFindCgroupV1(t *testing.T) {
	const hybrid = `tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,relatime,cpu,cpuacct 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
`
	if got, err := findCgroupV1(strings.NewReader(hybrid), "memory"); err != nil || got != "/sys/fs/cgroup/memory" {
		t.Errorf("memory: %q, %v", got, err)
	}
	if got, err := findCgroupV1(strings.NewReader(hybrid), "cpuacct"); err != nil || got != "/sys/fs/cgroup/cpu,cpuacct" {
		t.Errorf("cpuacct: %q, %v", got, err)
	}
	if _, err := findCgroupV1(strings.NewReader("cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n"), "memory"); !errors.Is(err, ErrNotMounted) {
		t.Errorf("unified: err = %v, want ErrNotMounted", err)
	}
}
