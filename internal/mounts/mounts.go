// Package mounts finds where a filesystem type is mounted by reading
// /proc/mounts. It exists so that redirect (cgroup v2, bpffs) and the test
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
	"strings"
)

// ErrNotMounted is returned (wrapped) when no mount of the type exists.
var ErrNotMounted = errors.New("not mounted")

// Find returns the first mount point of fstype ("cgroup2", "bpf") listed in
// /proc/mounts.
func Find(fstype string) (string, error) {
	f, err := os.Open("/proc/mounts")
	if err != nil {
		return "", fmt.Errorf("find %s mount: %w", fstype, err)
	}
	defer f.Close()
	return find(f, fstype)
}

func find(r io.Reader, fstype string) (string, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		// device mountpoint fstype options dump pass
		fields := strings.Fields(sc.Text())
		if len(fields) >= 3 && fields[2] == fstype {
			return unescape(fields[1]), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("find %s mount: read /proc/mounts: %w", fstype, err)
	}
	return "", fmt.Errorf("find %s mount: %w", fstype, ErrNotMounted)
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
