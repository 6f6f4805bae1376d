package kube

import (
	"errors"
	"log/slog"

	"github.com/egressd/egressd/cgroupid"
	"github.com/egressd/egressd/kube/pods"
	"github.com/egressd/egressd/l7"
)

// Scoper is the l7.Scoper of a Kubernetes node: a connection's cgroup
// names its pod (pods.Watcher), the pod its namespace, and the namespace
// its rules (Rules.For: the global rules, then the namespace's own). A
// host process (a cgroup that is no pod's) gets the global rules; so
// does a connection whose pod cannot be identified, with a warning (at
// most one a minute per cgroup).
type Scoper struct {
	pods  PodLookup
	rules *Rules
	log   *slog.Logger

	warned cgroupid.Throttle
}

// PodLookup finds the pod of a cgroup: a *pods.Watcher.
type PodLookup interface {
	Lookup(cgroupID uint64) (pods.Pod, error)
}

// NewScoper returns the Scoper of w's pods and r's rules.
func NewScoper(w PodLookup, r *Rules, log *slog.Logger) *Scoper {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Scoper{pods: w, rules: r, log: log}
}

// Scope implements l7.Scoper. It may wait for a pod the API has not named
// yet (pods.Watcher.Lookup: at most pods.Options.Wait).
func (s *Scoper) Scope(cgroupID uint64) l7.Scope {
	p, err := s.pods.Lookup(cgroupID)
	if err != nil {
		if !errors.Is(err, pods.ErrNotPod) {
			s.warn(cgroupID, err)
		}
		return l7.Scope{}
	}
	return l7.Scope{Rules: s.rules.For(p.Namespace), Namespace: p.Namespace, Pod: p.Name}
}

// warn logs, at most once a minute per cgroup, a connection decided by
// the global rules because its pod is unknown.
func (s *Scoper) warn(id uint64, err error) {
	if !s.warned.Due(id) {
		return
	}
	s.log.Warn("connection from an unidentified pod: decided by the global rules only", "cgroup_id", id, "reason", err.Error())
}
