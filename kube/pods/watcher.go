package pods

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/egressd/egressd/cgroupid"
	"github.com/egressd/egressd/kube/internal/apiclient"
)

// DefaultWait bounds how long Lookup waits for a pod the API has not told
// the Watcher of yet (see Lookup).
const DefaultWait = 2 * time.Second

// Options configures a Watcher.
type Options struct {
	Client   *apiclient.Client // required (kube.Client)
	NodeName string            // required: only the pods with spec.nodeName == NodeName are watched
	// Roots are the cgroup v2 directories the pods' cgroups are in or
	// below (egressd's --cgroup directories).
	Roots  []string
	Logger *slog.Logger // nil: discard
	// Wait is Lookup's bound for a pod cgroup whose pod is not known yet;
	// 0: DefaultWait.
	Wait time.Duration
}

// Event tells a subscriber that a pod appeared (Old nil), changed its
// labels, cgroups, phase or network mode, or is gone (New nil).
type Event struct{ Old, New *Pod }

// Errors of Lookup.
var (
	// ErrNoCgroup: the cgroup ID is not a directory below the roots (0, a
	// cgroup removed since, or one outside them).
	ErrNoCgroup = errors.New("cgroup not found below the watched cgroups")
	// ErrNotPod: the cgroup is no pod's (a host process's, say).
	ErrNotPod = errors.New("cgroup is no pod's")
)

// UnknownPodError: the cgroup is a pod's that the API has not named (in
// time): a pod deleted by force whose processes still run, or an API
// server too slow to tell.
type UnknownPodError struct{ UID, Path string }

func (e *UnknownPodError) Error() string {
	return fmt.Sprintf("cgroup %s is pod %s's, which the API has not named on this node", e.Path, e.UID)
}

// Watcher keeps the pods of one node and their cgroups. It is safe for
// concurrent use.
type Watcher struct {
	opts     Options
	log      *slog.Logger
	index    *cgroupid.Index
	informer *apiclient.Informer // synced: the first list went through upsert
	rescan   chan struct{}       // asks the rescan loop to walk the cgroups now

	mu     sync.Mutex
	byKey  map[string]*Pod              // by cgroupKey; a static pod is found by its hash
	dirs   map[string]map[uint64]string // pod-level cgroup directories by pod key, as of the last walk
	added  chan struct{}                // closed (and replaced) whenever a pod is added or the cache syncs
	missed map[string]time.Time         // pod UIDs a Lookup waited for in vain, and when
	subs   map[int]func(Event)
	nsub   int
	queue  []queued
	wake   chan struct{} // the dispatcher has a queue to deliver

	waiting func() // tests: a Lookup is about to wait for a pod (w.mu held)
}

type queued struct {
	sub int // 0: every subscriber
	ev  Event
}

// New returns a Watcher; Run starts it.
func New(opts Options) (*Watcher, error) {
	if opts.Client == nil || opts.NodeName == "" {
		return nil, errors.New("pods: a client and a node name are required")
	}
	if opts.Wait <= 0 {
		opts.Wait = DefaultWait
	}
	w := &Watcher{
		opts: opts, log: opts.Logger, rescan: make(chan struct{}, 1),
		byKey: map[string]*Pod{}, added: make(chan struct{}), missed: map[string]time.Time{},
		subs: map[int]func(Event){}, wake: make(chan struct{}, 1),
	}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	w.index = cgroupid.New(opts.Roots...)
	w.informer = apiclient.NewInformer(opts.Client, GVR, "spec.nodeName="+opts.NodeName, apiclient.Handlers{
		Add:    w.upsert,
		Update: func(_, obj apiclient.Object) { w.upsert(obj) },
		Delete: w.remove,
	}, w.log)
	return w, nil
}

// Run watches the API and the cgroups until ctx ends.
func (w *Watcher) Run(ctx context.Context) {
	go w.informer.Run(ctx)
	go w.dispatch(ctx)
	go func() {
		if w.WaitSynced(ctx) == nil {
			w.mu.Lock()
			w.wakeLookups()
			w.mu.Unlock()
		}
	}()
	w.rescanLoop(ctx)
}

// WaitSynced waits until the first list of the node's pods is in.
func (w *Watcher) WaitSynced(ctx context.Context) error {
	select {
	case <-w.informer.Synced():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("pods of node %s not listed: %w", w.opts.NodeName, context.Cause(ctx))
	}
}

// Synced reports whether the first list of pods is in.
func (w *Watcher) Synced() bool { return w.informer.HasSynced() }

// Lookup returns the pod whose cgroup (or a cgroup below it) has ID id.
// An ID not seen yet makes it walk the cgroups again (cgroupid.Index). A
// pod cgroup whose pod the API has not named yet — a pod that connects
// at once, before the watch event reached the agent — is waited for,
// at most Options.Wait; a UID waited for in vain is not waited for again
// for a minute. The error says why no pod was found: ErrNoCgroup,
// ErrNotPod or an *UnknownPodError.
func (w *Watcher) Lookup(id uint64) (Pod, error) {
	path, ok := w.index.Path(id)
	if !ok {
		return Pod{}, ErrNoCgroup
	}
	dir, key, ok := podDir(path)
	if !ok {
		return Pod{}, ErrNotPod
	}
	deadline := time.Now().Add(w.opts.Wait)
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		if p := w.byKey[key]; p != nil {
			if !slices.Contains(slices.Collect(maps.Values(p.Cgroups)), dir) {
				w.askRescan() // subscribers hear of the new cgroup
			}
			return *p, nil
		}
		if t, ok := w.missed[key]; ok && time.Since(t) < time.Minute {
			return Pod{}, &UnknownPodError{UID: key, Path: path}
		}
		left := time.Until(deadline)
		if left <= 0 {
			w.missed[key] = time.Now()
			return Pod{}, &UnknownPodError{UID: key, Path: path}
		}
		ch := w.added
		if w.waiting != nil {
			w.waiting()
		}
		w.mu.Unlock()
		t := time.NewTimer(left)
		select {
		case <-ch:
		case <-t.C:
		}
		t.Stop()
		w.mu.Lock()
	}
}

// Pods returns the pods known now.
func (w *Watcher) Pods() []Pod {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]Pod, 0, len(w.byKey))
	for _, p := range w.byKey {
		out = append(out, *p)
	}
	return out
}

// Subscribe calls fn for every Event from now on, first with one for
// each pod known now (Old nil). Calls come from one goroutine, in order,
// once Run runs; fn must not block for long. cancel stops the calls.
func (w *Watcher) Subscribe(fn func(Event)) (cancel func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.nsub++
	id := w.nsub
	w.subs[id] = fn
	for _, p := range w.byKey {
		w.queue = append(w.queue, queued{sub: id, ev: Event{New: p}})
	}
	w.signal()
	return func() {
		w.mu.Lock()
		delete(w.subs, id)
		w.mu.Unlock()
	}
}

// upsert takes a pod added or updated in the API.
func (w *Watcher) upsert(u apiclient.Object) {
	p := fromObject(u)
	w.mu.Lock()
	defer w.mu.Unlock()
	old := w.byKey[p.cgroupKey()]
	if old != nil {
		p.Cgroups = old.Cgroups
		if old.sameAs(p) && old.Namespace == p.Namespace && old.Name == p.Name {
			return
		}
	} else {
		p.Cgroups = w.cgroupsOf(p.cgroupKey())
		delete(w.missed, p.cgroupKey())
		w.wakeLookups()
		if p.pending() {
			w.askRescan()
		}
	}
	w.byKey[p.cgroupKey()] = p
	w.emit(Event{Old: old, New: p})
}

// remove takes a pod deleted from the API.
func (w *Watcher) remove(u apiclient.Object) {
	key := fromObject(u).cgroupKey()
	w.mu.Lock()
	defer w.mu.Unlock()
	if old := w.byKey[key]; old != nil {
		delete(w.byKey, key)
		w.emit(Event{Old: old})
	}
}

// wakeLookups lets the Lookups waiting for a pod look again. w.mu held.
func (w *Watcher) wakeLookups() {
	close(w.added)
	w.added = make(chan struct{})
}

// emit queues ev for every subscriber. w.mu held.
func (w *Watcher) emit(ev Event) {
	w.queue = append(w.queue, queued{ev: ev})
	w.signal()
}

func (w *Watcher) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// dispatch delivers queued events until ctx ends.
func (w *Watcher) dispatch(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		}
		for {
			w.mu.Lock()
			if len(w.queue) == 0 {
				w.mu.Unlock()
				break
			}
			q := w.queue[0]
			w.queue = w.queue[1:]
			var fns []func(Event)
			if q.sub != 0 {
				if fn := w.subs[q.sub]; fn != nil {
					fns = append(fns, fn)
				}
			} else {
				for _, fn := range w.subs {
					fns = append(fns, fn)
				}
			}
			w.mu.Unlock()
			for _, fn := range fns {
				fn(q.ev)
			}
		}
	}
}

// askRescan asks the rescan loop for a walk, without waiting.
func (w *Watcher) askRescan() {
	select {
	case w.rescan <- struct{}{}:
	default:
	}
}

// Rescan intervals: while a pod's cgroup is still to be created, and
// otherwise (cgroups removed behind the API's back).
const (
	pendingRescan = time.Second
	idleRescan    = 30 * time.Second
)

// rescanLoop walks the cgroups when asked, every second while a pod's
// cgroup has not appeared yet, and every 30 s otherwise.
func (w *Watcher) rescanLoop(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.rescan:
		case <-t.C:
		}
		pending := w.walk()
		t.Reset(map[bool]time.Duration{true: pendingRescan, false: idleRescan}[pending])
	}
}

// walk reads the cgroups again and updates every pod's Cgroups, emitting
// an Event for each that changed; it reports whether a pod still waits
// for its cgroup.
func (w *Watcher) walk() (pending bool) {
	w.index.Walk()
	dirs := podDirs(w.index.Paths())
	w.mu.Lock()
	defer w.mu.Unlock()
	w.dirs = dirs
	for key, p := range w.byKey {
		cg := dirs[key]
		if !maps.Equal(cg, p.Cgroups) {
			q := *p
			q.Cgroups = cg
			w.byKey[key] = &q
			w.emit(Event{Old: p, New: &q})
			p = &q
		}
		pending = pending || p.pending()
	}
	return pending
}

// cgroupsOf returns the pod-level directories of the pod named key as of
// the last walk. w.mu held.
func (w *Watcher) cgroupsOf(key string) map[uint64]string { return w.dirs[key] }

// podDirs groups the pod-level directories among paths by pod key.
func podDirs(paths map[uint64]string) map[string]map[uint64]string {
	out := map[string]map[uint64]string{}
	for id, p := range paths {
		dir, key, ok := podDir(p)
		if !ok || dir != p {
			continue
		}
		if out[key] == nil {
			out[key] = map[uint64]string{}
		}
		out[key][id] = p
	}
	return out
}
