package pods

import "strings"

// UIDFromPath returns the UID of the pod whose cgroup directory path is,
// or is below: the kubelet names a pod's cgroup after its UID in every
// layout it writes.
//
//	systemd driver: .../kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid, '-' as '_'>.slice/cri-containerd-<id>.scope
//	                .../kubepods.slice/kubepods-pod<uid>.slice/...          (Guaranteed QoS)
//	                .../kubelet.slice/kubelet-kubepods.slice/...             (a kubelet with --cgroup-root, as kind runs it)
//	cgroupfs:       .../kubepods/besteffort/pod<uid>/<container id>
//	                .../kubepods/pod<uid>/<container id>                     (Guaranteed QoS)
//	hybrid:         /sys/fs/cgroup/unified/kubepods/... — either of the above below the v2 mount
//
// A static pod's cgroup carries its config hash (32 hex digits) where an
// API pod has its UID; its mirror pod names the hash in the annotation
// kubernetes.io/config.mirror (the Watcher indexes both).
//
// The outermost pod element wins: a process in a pod that may create
// cgroups below its own (a nested kubelet, a delegated subtree) cannot
// pass as another pod by naming a directory pod<another uid>.
func UIDFromPath(path string) (uid string, ok bool) {
	for elem := range strings.SplitSeq(path, "/") {
		if uid, ok := podElement(elem); ok {
			return uid, true
		}
	}
	return "", false
}

// podElement parses one path element as a pod's cgroup directory.
func podElement(elem string) (string, bool) {
	if name, ok := strings.CutSuffix(elem, ".slice"); ok {
		// systemd: the slice's name is its parent's name plus "-pod<uid>",
		// with the UID's '-' written '_' (systemd reserves '-' for nesting).
		i := strings.LastIndex(name, "-pod")
		if i < 0 || !strings.Contains(name[:i], "kubepods") {
			return "", false
		}
		uid := strings.ReplaceAll(name[i+len("-pod"):], "_", "-")
		return uid, validUID(uid)
	}
	if uid, ok := strings.CutPrefix(elem, "pod"); ok {
		return uid, validUID(uid)
	}
	return "", false
}

// validUID accepts a UUID (8-4-4-4-12 hex digits, an API pod's UID) or 32
// hex digits (a static pod's config hash), in lower case as the kubelet
// writes them.
func validUID(s string) bool {
	switch len(s) {
	case 36:
		for i := range len(s) {
			if i == 8 || i == 13 || i == 18 || i == 23 {
				if s[i] != '-' {
					return false
				}
			} else if !isHex(s[i]) {
				return false
			}
		}
		return true
	case 32:
		for i := range len(s) {
			if !isHex(s[i]) {
				return false
			}
		}
		return true
	}
	return false
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }

// podDir returns the pod-level directory of path (the directory whose name
// is the outermost pod element) and the pod's UID; ok is false when path
// is no pod's cgroup.
func podDir(path string) (dir, uid string, ok bool) {
	off := 0
	for elem := range strings.SplitSeq(path, "/") {
		off += len(elem)
		if uid, ok := podElement(elem); ok {
			return path[:off], uid, true
		}
		off++ // the '/'
	}
	return "", "", false
}
