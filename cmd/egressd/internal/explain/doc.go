// Package explain answers `egressd explain` without networking of its own
// (but for the Kubernetes API with --kubeconfig): query.go decides one
// HOST[:PORT] against a rule set in one greppable line (the rule, port,
// protocol, egress proxy and source, or why not and on which ports it
// would be allowed); log.go reads access-log lines back and says what was
// decided then, why, and what the rules decide now; scope.go layers a
// namespace's rules on the global ones (--namespace, from files or the
// API) as the agent does. The command's flags, usage and exit codes stay
// in cmd/egressd (explain.go); explain --pod asks the agent (explainpod.go).
package explain
