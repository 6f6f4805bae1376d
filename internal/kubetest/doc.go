// Package kubetest starts a real kube-apiserver and etcd on loopback for
// tests of the agent's Kubernetes side (kube's informers, e2e's agent
// with --kubernetes): no kubelet, scheduler or controllers, a static
// token with every right, deploy/'s EgressRule CRD applied. The binaries:
// etcd from PATH, kube-apiserver from scripts/k8s-build.sh's cache
// (/var/cache/egressd/k8s/<version>/) or $EGRESSD_KUBE_APISERVER.
//
// Files:
//   - kubetest.go: Start, the servers and a client; Create.
package kubetest
