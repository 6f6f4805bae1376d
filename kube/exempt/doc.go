// Package exempt leaves the pods the operator selected alone: it keeps
// their cgroups in the agent's exempt-cgroup map (redirect.SetExempt), so
// the BPF programs do not redirect them, as the pods of the node come,
// change their labels and go (kube/pods.Watcher's events).
//
// Which pods (Policy): every pod of a namespace listed by
// --exempt-namespace (reason namespace); a pod labelled
// egressd.io/exempt=true in a namespace listed by --exempt-label-namespace
// (reason label; the label is ignored in every other namespace, so a
// tenant who may label its own pods cannot exempt itself); and in
// egressd's own namespace (--system-namespace) the gateway's pods
// (egressd.io/gateway=true, reason gateway) and the agent's
// (egressd.io/agent=true, reason agent).
//
// Files:
//   - policy.go: Policy, the labels, Reasons and Explain.
//   - controller.go: Controller: events to the map, Sync once the pods are
//     listed, Pod and Exempt for the admin endpoint and egressd explain.
package exempt
