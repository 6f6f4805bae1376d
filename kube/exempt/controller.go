package exempt

import (
	"cmp"
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"

	"github.com/egressd/egressd/kube/pods"
	"github.com/egressd/egressd/redirect"
)

// Map is the agent's exempt-cgroup map (*redirect.Redirector).
type Map interface {
	SetExempt(id uint64, path string, why redirect.ExemptReason, on bool) error
	ReplaceExempt(why redirect.ExemptReason, cgroups map[uint64]string) error
}

// Status is what the Controller knows of one pod.
type Status struct {
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	UID       string   `json:"uid"`
	Exempt    bool     `json:"exempt"`
	Reasons   string   `json:"reasons"` // redirect.ExemptReason's String: "label+gateway", "none"
	Why       string   `json:"why"`     // Policy.Explain
	Cgroups   []string `json:"cgroups"` // the pod's cgroup directories; none yet: the kubelet has not made them
}

// Controller keeps the exempt reasons of Managed in a Map as the pods of
// the node come, change their labels and go. It is safe for concurrent
// use.
type Controller struct {
	policy Policy
	m      Map
	log    *slog.Logger

	mu   sync.Mutex
	pods map[string]podState // by UID
}

type podState struct {
	ns, name, uid string
	labels        map[string]string
	why           redirect.ExemptReason
	cgroups       map[uint64]string
}

// New returns a Controller writing to m; Run feeds it.
func New(policy Policy, m Map, log *slog.Logger) *Controller {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Controller{policy: policy, m: m, log: log, pods: map[string]podState{}}
}

// Run takes w's events until ctx ends. Once w has listed the node's pods
// it makes the map's Managed reasons exactly those of the pods known
// (Sync), dropping what a previous agent left for pods gone since.
func (c *Controller) Run(ctx context.Context, w *pods.Watcher) error {
	cancel := w.Subscribe(c.Handle)
	defer cancel()
	if err := w.WaitSynced(ctx); err != nil {
		return err
	}
	c.Sync(w.Pods())
	<-ctx.Done()
	return nil
}

// Handle applies one pod event.
func (c *Controller) Handle(ev pods.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ev.New == nil {
		if ev.Old != nil {
			c.apply(ev.Old.UID, nil)
		}
		return
	}
	s := c.state(ev.New)
	c.apply(ev.New.UID, &s)
}

// Sync makes all the pods of the node: those not in it are forgotten,
// and each Managed reason is given to exactly the cgroups of the pods
// that have it.
func (c *Controller) Sync(all []pods.Pod) {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[string]bool{}
	for i := range all {
		s := c.state(&all[i])
		seen[s.uid] = true
		c.apply(s.uid, &s)
	}
	for uid := range c.pods {
		if !seen[uid] {
			c.apply(uid, nil)
		}
	}
	for _, why := range redirect.ExemptReasons {
		if why&Managed == 0 {
			continue
		}
		set := map[uint64]string{}
		for _, s := range c.pods {
			if s.why&why != 0 {
				maps.Copy(set, s.cgroups)
			}
		}
		if err := c.m.ReplaceExempt(why, set); err != nil {
			c.log.Warn("exempt pods: "+err.Error(), "reason", why.String())
		}
	}
}

func (c *Controller) state(p *pods.Pod) podState {
	return podState{ns: p.Namespace, name: p.Name, uid: p.UID, labels: p.Labels,
		why: c.policy.Reasons(p.Namespace, p.Labels), cgroups: p.Cgroups}
}

// apply moves pod uid from its known state to now (nil: gone), giving
// and taking reasons cgroup by cgroup. c.mu held.
func (c *Controller) apply(uid string, now *podState) {
	old, had := c.pods[uid]
	var next podState
	if now != nil {
		next = *now
	}
	ids := map[uint64]string{}
	maps.Copy(ids, old.cgroups)
	maps.Copy(ids, next.cgroups)
	failed := false
	for id, path := range ids {
		var was, is redirect.ExemptReason
		if _, ok := old.cgroups[id]; ok {
			was = old.why
		}
		if _, ok := next.cgroups[id]; ok {
			is = next.why
		}
		for _, ch := range []struct {
			bits redirect.ExemptReason
			on   bool
		}{{is &^ was, true}, {was &^ is, false}} {
			if ch.bits == 0 {
				continue
			}
			if err := c.m.SetExempt(id, path, ch.bits, ch.on); err != nil {
				failed = true
				c.log.Warn("exempt pod: "+err.Error(), "namespace", next.ns, "pod", next.name)
			}
		}
	}
	exemptWas := had && old.why != 0 && len(old.cgroups) > 0
	exemptNow := now != nil && next.why != 0 && len(next.cgroups) > 0
	switch {
	case exemptNow && !exemptWas && !failed:
		c.log.Info("pod exempt: not redirected", "namespace", next.ns, "pod", next.name, "reason", next.why.String(),
			"why", c.policy.Explain(next.ns, next.labels), "cgroups", slices.Sorted(maps.Values(next.cgroups)))
	case exemptWas && now != nil && next.why == 0:
		c.log.Info("pod no longer exempt: redirected again", "namespace", next.ns, "pod", next.name, "was", old.why.String())
	case exemptWas && now == nil:
		c.log.Debug("exempt pod gone", "namespace", old.ns, "pod", old.name, "reason", old.why.String())
	}
	if now == nil {
		delete(c.pods, uid)
		return
	}
	c.pods[uid] = next
}

// Pod returns what is known of the pod ns/name; ok is false for a pod
// not on this node (or not listed yet).
func (c *Controller) Pod(ns, name string) (st Status, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.pods {
		if s.ns == ns && s.name == name {
			return c.status(s), true
		}
	}
	return Status{}, false
}

// Exempt returns the exempt pods, sorted by namespace and name.
func (c *Controller) Exempt() []Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Status
	for _, s := range c.pods {
		if s.why != 0 {
			out = append(out, c.status(s))
		}
	}
	slices.SortFunc(out, func(a, b Status) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return out
}

func (c *Controller) status(s podState) Status {
	return Status{Namespace: s.ns, Name: s.name, UID: s.uid, Exempt: s.why != 0, Reasons: s.why.String(),
		Why: c.policy.Explain(s.ns, s.labels), Cgroups: slices.Sorted(maps.Values(s.cgroups))}
}
