// Package mounts finds where a filesystem type (or a cgroup v1 controller)
// is mounted by reading /proc/mounts. It exists so that redirect (cgroup
// v2, bpffs), cmd/egressd (the memory controller) and the test
// fixtures in internal/kerneltest agree on the lookup without hard-coding
// /sys/fs/cgroup or /sys/fs/bpf: hosts differ (unified layout at
// /sys/fs/cgroup, hybrid layout at /sys/fs/cgroup/unified, containers with
// their own mounts).
//
// Lifecycle trap: the answer is a snapshot; a mount made afterwards (for
// example bpffs mounted by redirect) is only seen by a new call.
package mounts

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// ErrNotMounted is returned (wrapped) when no mount of the type exists.
var ErrNotMounted = errors.New("not mounted")

// Find returns the first mount point of fstype ("cgroup2", "bpf") listed in
// /proc/mounts.
func Find(fstype string) (string, error) {
	return findIn(fstype+" mount", func(r io.Reader) (string, error) { return find(r, fstype) })
}

// FindCgroupV1 returns the mount point of the cgroup v1 hierarchy that
// holds controller ("memory"), as on hosts with the hybrid or legacy layout.
func FindCgroupV1(controller string) (string, error) {
	return findIn("cgroup "+controller+" mount", func(r io.Reader) (string, error) { return findCgroupV1(r, controller) })
}

func findIn(what string, find func(io.Reader) (string, error)) (string, error) {
	f, err := os.Open("/proc/mounts")
	if err != nil {
		return "", fmt.Errorf("find %s: %w", what, err)
	}
	defer f.Close()
	return find(f)
}

func find(r io.Reader, fstype string) (string, error) {
	return scan(r, fstype+" mount", func(fields []string) bool { return fields[2] == fstype })
}

func findCgroupV1(r io.Reader, controller string) (string, error) {
	return scan(r, "cgroup "+controller+" mount", func(fields []string) bool {
		return len(fields) >= 4 && fields[2] == "cgroup" && slices.Contains(strings.Split(fields[3], ","), controller)
	})
}

// scan returns the mount point of the first line of /proc/mounts (in r)
// whose fields (device mountpoint fstype options dump pass) match.
func scan(r io.Reader, what string, match func(fields []string) bool) (string, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) >= 3 && match(fields) {
			return unescape(fields[1]), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("find %s: read /proc/mounts: %w", what, err)
	}
	return "", fmt.Errorf("find %s: %w", what, ErrNotMounted)
}

// unescape undoes the octal escapes (\040 for space and so on) the kernel
// uses for mount points in /proc/mounts.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }
