// Package kube is egressd's agent on a Kubernetes node: EgressRules as
// API objects (config.istio.io/v1alpha2, namespaced), each namespace's
// rules applying to its own pods, the global namespace's (and the
// --rules files) to every pod and to the node's host processes.
//
// Each object's spec goes through the rules package's own decoder and
// checks (rules.LoadDocuments), so the agent applies exactly what
// `egressd check` accepts; a bad version never displaces a good one, per
// object and per namespace (Rules). Which pod a connection comes from is
// package pods' job; Scoper joins the two for the proxy (l7.Scoper).
//
// Files:
//   - client.go: the API client (in-cluster or a kubeconfig; our own,
//     kube/internal/apiclient, not client-go: see its doc) and the
//     default global namespace (the agent's own).
//   - rules.go: Rules, the EgressRule informer and the per-namespace
//     sets; Document, an object as the rules package reads it.
//   - scoper.go: Scoper, cgroup → pod → namespace → rules.
//   - list.go: NamespaceRules, one namespace's rules listed once (explain).
package kube
