// Package apiclient is the agent's own minimal Kubernetes API client:
// config.go reads a kubeconfig file (or the pod's service account),
// client.go lists and watches one resource as JSON over net/http, and
// informer.go keeps a list-then-watch cache of it that calls handlers on
// one goroutine, in order.
//
// Why not client-go: the agent's resident memory is mostly the file
// pages of its binary, and client-go with apimachinery is ~1.7 MB of text
// and rodata plus their pclntab and init-time allocations, ~3 MiB
// resident at every start, with or without --kubernetes (issue 20).
//
// Objects are decoded JSON (Object, a map[string]any). Unsupported
// kubeconfig fields (exec plugins, auth providers, basic auth, proxies)
// are errors naming the field, never ignored.
package apiclient
