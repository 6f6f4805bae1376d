// Package pods tells which pod of this node a connection comes from: it
// watches the node's pods through the Kubernetes API (spec.nodeName ==
// the node, a field selector) and maps cgroup IDs, as the BPF connect
// hooks record them, to pods by the pod UID the kubelet writes into every
// pod's cgroup path. The agent decides a pod's requests by its
// namespace's rules (package kube), and exempts pods by label with it.
//
// A pod that starts and connects at once may be running before the watch
// event naming it reached the agent: Lookup waits for it, at most
// Options.Wait (2 s by default), when the connection's cgroup is a pod's;
// a cgroup that is not a pod's is answered at once. Pods' own cgroup
// directories are found by walking the roots (cgroupid.Index): when a
// pod appears, every second while one of them has none yet, when a
// connection comes from a cgroup not seen before, and every 30 s.
//
// Files:
//   - cgroup.go: the pod UID in a cgroup path, for the systemd and
//     cgroupfs drivers and the hybrid layout.
//   - pod.go: Pod, what is kept of a pod object.
//   - watcher.go: Watcher: the informer, Lookup by cgroup ID, Subscribe
//     to pods appearing, changing (labels, cgroups) and going.
package pods
