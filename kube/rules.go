package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/egressd/egressd/kube/internal/apiclient"
	"github.com/egressd/egressd/rules"
)

// EgressRuleGVR is the resource of EgressRule objects: Istio 0.x's group
// and version, which Istio no longer serves (deploy/ has the CRD).
var EgressRuleGVR = apiclient.Resource{Group: "config.istio.io", Version: "v1alpha2", Resource: "egressrules"}

// RulesOptions configures Rules.
type RulesOptions struct {
	Client *apiclient.Client // required (Client)
	// Files are the rules of --rules; with the global namespace's objects
	// they are the global set. Required.
	Files rules.Source
	// GlobalNamespace's EgressRules apply to every pod.
	GlobalNamespace string
	// Check, if not nil, vets each new version of a namespace's rules
	// (useEgressProxy without an egress proxy, say): an error refuses it.
	Check func(*rules.Set) error
	// OnChange, if not nil, is called after a namespace's rules in force
	// changed (the proxy re-decides its long connections). It must not
	// block.
	OnChange func()
	Logger   *slog.Logger // nil: discard
}

// Rules holds the EgressRules of every namespace, as the API has them:
// per namespace, the set compiled from each object's last good version.
// An object whose new version is invalid is logged and counted and its
// previous version (or nothing, for a new object) stays; a namespace
// whose objects are valid one by one but not together (one port given
// two protocols), or that conflict with the global rules, keeps its
// previous set likewise. A bad version never displaces a good one.
type Rules struct {
	opts     RulesOptions
	log      *slog.Logger
	global   *rules.Layered      // Files, then the global namespace's own
	informer *apiclient.Informer // synced: the first list went through change

	mu  sync.Mutex // serializes changes; guards ns
	ns  map[string]*Namespace
	all atomic.Pointer[[]*Namespace] // ns's values, sorted by name, for Stats
}

// Namespace is one namespace's own EgressRules in force (a rules.Source).
type Namespace struct {
	Name    string
	cur     atomic.Pointer[rules.Set]
	layered *rules.Layered // the global rules, then these

	// objects are the namespace's objects by name, each in its latest
	// version valid alone (Rules.mu); the set in force may be older.
	objects map[string]rules.Document

	reloads, failures atomic.Uint64
	lastFailed        atomic.Bool
}

// Current returns the namespace's own rules in force.
func (n *Namespace) Current() *rules.Set { return n.cur.Load() }

// Stats counts the namespace's new versions applied and refused.
func (n *Namespace) Stats() rules.ReloadStats {
	return rules.ReloadStats{Reloads: n.reloads.Load(), Failures: n.failures.Load(), LastFailed: n.lastFailed.Load()}
}

// NewRules returns Rules; Run starts watching.
func NewRules(opts RulesOptions) (*Rules, error) {
	if opts.Client == nil || opts.Files == nil || opts.GlobalNamespace == "" {
		return nil, fmt.Errorf("kube: rules need a client, the file rules and a global namespace")
	}
	r := &Rules{opts: opts, log: opts.Logger, ns: map[string]*Namespace{}}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	r.mu.Lock()
	g := r.namespace(opts.GlobalNamespace)
	r.mu.Unlock()
	r.global = rules.NewLayered(opts.Files, g, r.dropped(opts.GlobalNamespace))
	r.informer = apiclient.NewInformer(opts.Client, EgressRuleGVR, "", apiclient.Handlers{
		Add:    func(obj apiclient.Object) { r.change(obj, false) },
		Update: func(_, obj apiclient.Object) { r.change(obj, false) },
		Delete: func(obj apiclient.Object) { r.change(obj, true) },
	}, r.log)
	return r, nil
}

// Run watches the EgressRules until ctx ends.
func (r *Rules) Run(ctx context.Context) { r.informer.Run(ctx) }

// WaitSynced waits until the first list of EgressRules is applied.
func (r *Rules) WaitSynced(ctx context.Context) error {
	select {
	case <-r.informer.Synced():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("EgressRules (%s.%s) not listed: %w", EgressRuleGVR.Resource, EgressRuleGVR.Group, context.Cause(ctx))
	}
}

// Global returns the global rules: the files', then the global
// namespace's. Host processes, and pods of the global namespace, get these.
func (r *Rules) Global() rules.Source { return r.global }

// For returns the rules of the pods of namespace ns: the global ones,
// then the namespace's own.
func (r *Rules) For(ns string) rules.Source {
	if ns == r.opts.GlobalNamespace {
		return r.global
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.namespace(ns).layered
}

// Namespaces returns every namespace known (with objects, or with pods
// that asked), sorted by name.
func (r *Rules) Namespaces() []*Namespace {
	if p := r.all.Load(); p != nil {
		return *p
	}
	return nil
}

// namespace returns ns's entry, making an empty one. r.mu held.
func (r *Rules) namespace(ns string) *Namespace {
	if n := r.ns[ns]; n != nil {
		return n
	}
	n := &Namespace{Name: ns, objects: map[string]rules.Document{}}
	empty, _, _ := rules.LoadDocuments()
	n.cur.Store(empty)
	if r.global != nil { // the global namespace's own entry is made before r.global
		n.layered = rules.NewLayered(r.global, n, r.dropped(ns))
	}
	r.ns[ns] = n
	all := slices.SortedFunc(maps.Values(r.ns), func(a, b *Namespace) int { return strings.Compare(a.Name, b.Name) })
	r.all.Store(&all)
	return n
}

// dropped logs the rules of ns that Layer left out (they conflict with
// rules below them).
func (r *Rules) dropped(ns string) func([]string) {
	return func(dropped []string) {
		for _, d := range dropped {
			r.log.Warn("EgressRule left out: it conflicts with the global rules", "namespace", ns, "rule", d)
		}
	}
}

// change applies an object added, updated or deleted. The namespace's
// candidate set is every object's latest version that is valid alone
// (else its previous one); a candidate that does not compile, fails Check
// or conflicts with the global rules is refused as a whole, and tried
// again at the next change of the namespace (deleting the object another
// one clashed with lets that one in).
func (r *Rules) change(u apiclient.Object, deleted bool) {
	ns, name := apiclient.Namespace(u), apiclient.Name(u)
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.namespace(ns)
	if deleted {
		if _, ok := n.objects[name]; !ok {
			return // never valid: nothing changes
		}
		delete(n.objects, name)
	} else {
		doc, err := Document(u)
		if err == nil {
			var ws []rules.Warning
			_, ws, err = rules.LoadDocuments(doc)
			for _, w := range ws {
				r.log.Warn("EgressRule: "+w.String(), "namespace", ns, "name", name)
			}
		}
		if err != nil {
			r.refuse(n, name, err, "this object's previous version (if any) stays in force")
			return
		}
		if old, ok := n.objects[name]; ok && string(old.Data) == string(doc.Data) {
			return // a resync, or a change outside spec and name
		}
		n.objects[name] = doc
	}
	docs := make([]rules.Document, 0, len(n.objects))
	for _, k := range slices.Sorted(maps.Keys(n.objects)) {
		docs = append(docs, n.objects[k])
	}
	set, _, err := rules.LoadDocuments(docs...)
	if err == nil && r.opts.Check != nil {
		err = r.opts.Check(set)
	}
	if err == nil && ns != r.opts.GlobalNamespace {
		if _, dropped := rules.Layer(r.global.Current(), set); len(dropped) > 0 {
			err = fmt.Errorf("conflicts with the global rules: %s", strings.Join(dropped, "; "))
		}
	}
	if err != nil {
		r.refuse(n, name, err, "the namespace's rules in force stay")
		return
	}
	n.cur.Store(set)
	n.reloads.Add(1)
	n.lastFailed.Store(false)
	r.log.Info("EgressRules applied", "namespace", ns, "object", name, "deleted", deleted, "rules", set.Len())
	if r.opts.OnChange != nil {
		r.opts.OnChange()
	}
}

// refuse logs and counts a refused version.
func (r *Rules) refuse(n *Namespace, name string, err error, kept string) {
	n.failures.Add(1)
	n.lastFailed.Store(true)
	r.log.Error("EgressRule refused: "+kept, "namespace", n.Name, "name", name, "err", err.Error())
}

// Document turns an EgressRule object into the document the rules
// package reads: its apiVersion, kind, name and spec (the rest of the
// metadata and any status are not rules).
func Document(u map[string]any) (rules.Document, error) {
	apiVersion, _ := u["apiVersion"].(string)
	kind, _ := u["kind"].(string)
	doc := map[string]any{
		"apiVersion": apiVersion,
		"kind":       kind,
		"metadata":   map[string]any{"name": apiclient.Name(u)},
	}
	if spec, ok := u["spec"]; ok {
		doc["spec"] = spec
	}
	data, err := json.Marshal(doc)
	if err != nil {
		return rules.Document{}, err
	}
	return rules.Document{Source: "EgressRule " + apiclient.Namespace(u) + "/" + apiclient.Name(u), Data: data}, nil
}
