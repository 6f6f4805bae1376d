// Package k8s holds the cluster tests: egressd's DaemonSet (deploy/) on a
// real single-node Kubernetes cluster that the test starts itself with
// scripts/k8s-up.sh (etcd, containerd, runc and the CNI plugins from
// Debian; the Kubernetes components built from the Go module proxy by
// scripts/k8s-build.sh and cached outside the tree) and removes with
// scripts/k8s-down.sh.
//
// The tests carry the build tag k8s, so `go test ./...` (scripts/test.sh)
// leaves them out: the first run builds Kubernetes for 7-15 minutes. Run
// them with scripts/k8s-test.sh, as .ci/run does; like the kernel tests they
// skip with a message unless root, and fail instead under EGRESSD_E2E=require.
//
// Files:
//   - cluster_test.go: the cases, in the order a user meets them (apply as the
//     README says; allowed 200 and denied 403, the upstream seeing egressd's
//     address; a ConfigMap rule change; the API server through its service
//     IP, kubectl logs and exec, probes; the agent pod deleted: fail closed,
//     the new pod takes over; kubectl rollout restart: the surge pod is
//     handed the sockets, no poll refused; --uninstall turning /readyz 503).
//   - scoping_test.go: EgressRules from the API — `kubectl apply` of each
//     invalid rule of deploy/testdata refused with egressd's message;
//     namespaces team-a and team-b with their own rules and global ones
//     (egressd-system's EgressRule and the ConfigMap): each pod reaches its
//     own and the global hosts and gets 403 for the other's, asserted at
//     the upstream; a rule applied opens for its namespace within 2 s and a
//     delete closes it; a pod connecting at once; an agent restart.
//   - kube_test.go: starting and removing the cluster, kubectl, requests
//     from a pod (scripts/fetch in the client image).
//   - upstream_test.go: the "external" server in the cluster's upstream
//     network namespace, recording what reached it and from where.
package k8s
