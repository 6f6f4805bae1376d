package pods

import (
	"maps"

	"github.com/egressd/egressd/kube/internal/apiclient"
)

// GVR is the resource the Watcher lists and watches: core v1 pods.
var GVR = apiclient.Resource{Version: "v1", Resource: "pods"}

// MirrorAnnotation holds, on a static pod's mirror, the config hash the
// kubelet names the static pod's cgroup after.
const MirrorAnnotation = "kubernetes.io/config.mirror"

// Pod is what the Watcher knows of one pod of the node. A Pod handed out
// is a copy; its maps must not be modified.
type Pod struct {
	Namespace, Name string
	UID             string
	// Labels are the pod's labels as the API has them now.
	Labels      map[string]string
	HostNetwork bool
	Phase       string // status.phase: Pending, Running, Succeeded, Failed, Unknown
	// Mirror is a static pod's config hash (MirrorAnnotation), which its
	// cgroup is named after instead of UID; "" for other pods.
	Mirror string
	// Cgroups are the pod's own cgroup directories (the pod-level ones,
	// whose subtrees hold its containers) found below the Watcher's
	// roots, by cgroup ID. Empty until the kubelet has created them.
	Cgroups map[uint64]string
}

// cgroupKey is the name the pod's cgroup directory carries.
func (p *Pod) cgroupKey() string {
	if p.Mirror != "" {
		return p.Mirror
	}
	return p.UID
}

// pending reports whether the pod's cgroup may still be created.
func (p *Pod) pending() bool {
	return len(p.Cgroups) == 0 && p.Phase != "Succeeded" && p.Phase != "Failed"
}

// sameAs reports whether q differs from p in nothing an Event is sent for:
// labels, cgroups, network mode.
func (p *Pod) sameAs(q *Pod) bool {
	return maps.Equal(p.Labels, q.Labels) && maps.Equal(p.Cgroups, q.Cgroups) && p.HostNetwork == q.HostNetwork &&
		p.Phase == q.Phase && p.Mirror == q.Mirror
}

// fromObject reads the fields the Watcher uses from a pod object.
func fromObject(u apiclient.Object) *Pod {
	p := &Pod{
		Namespace: apiclient.Namespace(u),
		Name:      apiclient.Name(u),
		UID:       apiclient.UID(u),
		Labels:    apiclient.StringMap(u, "labels"),
		Mirror:    apiclient.StringMap(u, "annotations")[MirrorAnnotation],
	}
	p.HostNetwork, _ = apiclient.Nested(u, "spec", "hostNetwork").(bool)
	p.Phase, _ = apiclient.Nested(u, "status", "phase").(string)
	return p
}
