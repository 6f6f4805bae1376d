package pods

import "testing"

func TestUIDFromPath(t *testing.T) {
	const uid = "0b7f3a52-9c1e-4d2a-8f6b-1a2b3c4d5e6f"
	const under = "0b7f3a52_9c1e_4d2a_8f6b_1a2b3c4d5e6f"
	const hash = "5b9a1e2c3d4f5a6b7c8d9e0f1a2b3c4d"
	cases := []struct {
		name, path, uid, dir string
	}{
		{"systemd besteffort container", "/sys/fs/cgroup/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + under + ".slice/cri-containerd-4f1d2c.scope",
			uid, "/sys/fs/cgroup/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + under + ".slice"},
		{"systemd burstable pod", "/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + under + ".slice",
			uid, "/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + under + ".slice"},
		{"systemd guaranteed", "/sys/fs/cgroup/kubepods.slice/kubepods-pod" + under + ".slice/crio-77.scope",
			uid, "/sys/fs/cgroup/kubepods.slice/kubepods-pod" + under + ".slice"},
		{"systemd cgroup root (kind)", "/sys/fs/cgroup/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod" + under + ".slice/cri-containerd-9.scope",
			uid, "/sys/fs/cgroup/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod" + under + ".slice"},
		{"cgroupfs besteffort", "/sys/fs/cgroup/kubepods/besteffort/pod" + uid + "/4f1d2c9e8a",
			uid, "/sys/fs/cgroup/kubepods/besteffort/pod" + uid},
		{"cgroupfs guaranteed", "/sys/fs/cgroup/kubepods/pod" + uid + "/4f1d2c9e8a",
			uid, "/sys/fs/cgroup/kubepods/pod" + uid},
		{"hybrid cgroupfs", "/sys/fs/cgroup/unified/kubepods/burstable/pod" + uid + "/abc",
			uid, "/sys/fs/cgroup/unified/kubepods/burstable/pod" + uid},
		{"hybrid systemd", "/sys/fs/cgroup/unified/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + under + ".slice/docker-1.scope",
			uid, "/sys/fs/cgroup/unified/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + under + ".slice"},
		{"static pod (config hash)", "/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + hash + ".slice/cri-containerd-1.scope",
			hash, "/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + hash + ".slice"},
		// The outermost pod element wins: a pod cannot name a cgroup
		// below its own after another pod.
		{"nested pod element", "/sys/fs/cgroup/kubepods/besteffort/pod" + uid + "/c1/kubepods/pod11111111-2222-3333-4444-555555555555/x",
			uid, "/sys/fs/cgroup/kubepods/besteffort/pod" + uid},
		{"host process", "/sys/fs/cgroup/system.slice/sshd.service", "", ""},
		{"QoS slice", "/sys/fs/cgroup/kubepods.slice/kubepods-besteffort.slice", "", ""},
		{"kubepods root", "/sys/fs/cgroup/kubepods", "", ""},
		{"not a UID", "/sys/fs/cgroup/kubepods/podman/x", "", ""},
		{"upper case", "/sys/fs/cgroup/kubepods/pod0B7F3A52-9C1E-4D2A-8F6B-1A2B3C4D5E6F", "", ""},
		{"slice outside kubepods", "/sys/fs/cgroup/user.slice/user-pod" + under + ".slice", "", ""},
		{"dashes misplaced", "/sys/fs/cgroup/kubepods/pod0b7f3a529-c1e-4d2a-8f6b-1a2b3c4d5e6f", "", ""},
	}
	for _, c := range cases {
		got, ok := UIDFromPath(c.path)
		if got != c.uid || ok != (c.uid != "") {
			t.Errorf("%s: UIDFromPath(%s) = %q, %v; want %q", c.name, c.path, got, ok, c.uid)
		}
		dir, key, ok := podDir(c.path)
		if dir != c.dir || key != c.uid || ok != (c.uid != "") {
			t.Errorf("%s: podDir(%s) = %q, %q, %v; want %q, %q", c.name, c.path, dir, key, ok, c.dir, c.uid)
		}
	}
}
