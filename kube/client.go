package kube

import (
	"os"
	"strings"

	"github.com/egressd/egressd/kube/internal/apiclient"
)

// serviceAccountNamespace is where the kubelet writes the pod's namespace
// beside its service account token.
const serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// FallbackGlobalNamespace is the global namespace when the agent cannot
// tell its own.
const FallbackGlobalNamespace = "egressd"

// Client returns a client of the API server: from the kubeconfig file,
// or the in-cluster config (the pod's service account) when kubeconfig
// is "". Its type is internal: callers hand it to NewRules, pods.New and
// NamespaceRules.
func Client(kubeconfig string) (*apiclient.Client, error) { return apiclient.New(kubeconfig) }

// DefaultGlobalNamespace is the agent's own namespace: the service
// account's namespace file, else $EGRESSD_POD_NAMESPACE, else
// FallbackGlobalNamespace.
func DefaultGlobalNamespace() string {
	return globalNamespace(serviceAccountNamespace, os.Getenv)
}

func globalNamespace(file string, getenv func(string) string) string {
	if b, err := os.ReadFile(file); err == nil {
		if ns := strings.TrimSpace(string(b)); ns != "" {
			return ns
		}
	}
	if ns := strings.TrimSpace(getenv("EGRESSD_POD_NAMESPACE")); ns != "" {
		return ns
	}
	return FallbackGlobalNamespace
}
