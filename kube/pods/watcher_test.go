package pods

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/egressd/egressd/cgroupid"
	"github.com/egressd/egressd/kube/internal/apiclient"
)

// These tests drive the Watcher's handlers with pod objects as the
// informer hands them over, over a directory tree laid out as the
// kubelet's cgroupfs driver lays out cgroups (a cgroup ID is a
// directory's inode number, so any directory will do). The informer
// itself, against a real API server, is tested on the cluster
// (e2e/k8s).

const (
	uidA = "0b7f3a52-9c1e-4d2a-8f6b-1a2b3c4d5e6f"
	uidB = "1c8f4b63-ad2f-4e3b-907c-2b3c4d5e6f70"
)

func podObject(ns, name, uid string, labels map[string]string) apiclient.Object {
	ls := map[string]any{}
	for k, v := range labels {
		ls[k] = v
	}
	return apiclient.Object{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"namespace": ns, "name": name, "uid": uid, "labels": ls},
		"spec":     map[string]any{"nodeName": "node-1"},
		"status":   map[string]any{"phase": "Running"},
	}
}

func newTestWatcher(t *testing.T, wait time.Duration) (*Watcher, string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "kubepods")
	mkdir(t, filepath.Join(root, "besteffort"))
	client := apiclient.ForServer("http://127.0.0.1:1") // never dialed: the informer does not run
	w, err := New(Options{Client: client, NodeName: "node-1", Roots: []string{root}, Wait: wait})
	if err != nil {
		t.Fatal(err)
	}
	return w, root
}

func mkdir(t *testing.T, dir string) uint64 {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	id, ok := cgroupid.ID(dir)
	if !ok {
		t.Fatalf("no ID for %s", dir)
	}
	return id
}

// TestLookupWaitsForAPodThatConnectsAtOnce: a container's cgroup exists
// before the pod's watch event arrives; Lookup waits for the event and
// answers with the pod, not with "unknown".
func TestLookupWaitsForAPodThatConnectsAtOnce(t *testing.T) {
	w, root := newTestWatcher(t, time.Minute)
	ctr := mkdir(t, filepath.Join(root, "besteffort", "pod"+uidA, "ctr1"))
	type result struct {
		p   Pod
		err error
	}
	got := make(chan result, 1)
	waiting := make(chan struct{})
	var once sync.Once
	w.waiting = func() { once.Do(func() { close(waiting) }) }
	go func() {
		p, err := w.Lookup(ctr)
		got <- result{p, err}
	}()
	<-waiting // the Lookup found the cgroup but no pod: hand the pod over
	w.upsert(podObject("team-a", "client", uidA, map[string]string{"app": "client"}))
	r := <-got
	if r.err != nil || r.p.Namespace != "team-a" || r.p.Name != "client" || r.p.UID != uidA || r.p.Labels["app"] != "client" {
		t.Fatalf("Lookup = %+v, %v; want team-a/client", r.p, r.err)
	}
}

func TestLookupErrors(t *testing.T) {
	w, root := newTestWatcher(t, 20*time.Millisecond)
	host := mkdir(t, filepath.Join(root, "besteffort", "not-a-pod"))
	if _, err := w.Lookup(host); !errors.Is(err, ErrNotPod) {
		t.Errorf("a cgroup that is no pod's: err %v, want ErrNotPod", err)
	}
	if _, err := w.Lookup(0); !errors.Is(err, ErrNoCgroup) {
		t.Errorf("cgroup 0: err %v, want ErrNoCgroup", err)
	}
	outside := mkdir(t, filepath.Join(t.TempDir(), "elsewhere"))
	if _, err := w.Lookup(outside); !errors.Is(err, ErrNoCgroup) {
		t.Errorf("a cgroup outside the roots: err %v, want ErrNoCgroup", err)
	}
	orphan := mkdir(t, filepath.Join(root, "besteffort", "pod"+uidB, "ctr"))
	var unknown *UnknownPodError
	if _, err := w.Lookup(orphan); !errors.As(err, &unknown) || unknown.UID != uidB {
		t.Fatalf("a pod the API does not name: err %v, want an UnknownPodError for %s", err, uidB)
	}
	// Named later, it is found at once (the miss is forgotten).
	w.upsert(podObject("team-b", "late", uidB, nil))
	if p, err := w.Lookup(orphan); err != nil || p.Name != "late" {
		t.Fatalf("after the pod arrived: %+v, %v", p, err)
	}
	// A pod nested in another's cgroup is the outer pod.
	w.upsert(podObject("team-a", "outer", uidA, nil))
	nested := mkdir(t, filepath.Join(root, "besteffort", "pod"+uidA, "c", "kubepods", "pod"+uidB, "x"))
	if p, err := w.Lookup(nested); err != nil || p.Name != "outer" {
		t.Fatalf("a cgroup named after pod B inside pod A's: %+v, %v; want outer (A)", p, err)
	}
}

// TestSubscribe: a subscriber hears of a pod, of its cgroup appearing,
// of a label change, and of its deletion; a late subscriber is told of
// the pods already known.
func TestSubscribe(t *testing.T) {
	w, root := newTestWatcher(t, time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.dispatch(ctx)
	events := make(chan Event, 16)
	stop := w.Subscribe(func(e Event) { events <- e })
	defer stop()
	next := func(what string) Event {
		t.Helper()
		select {
		case e := <-events:
			return e
		case <-time.After(10 * time.Second):
			t.Fatalf("no event for %s", what)
		}
		return Event{}
	}

	w.upsert(podObject("team-a", "client", uidA, map[string]string{"app": "client"}))
	if e := next("the pod"); e.Old != nil || e.New == nil || e.New.Name != "client" || len(e.New.Cgroups) != 0 {
		t.Fatalf("first event %+v; want the new pod without cgroups", e)
	}
	dir := filepath.Join(root, "besteffort", "pod"+uidA)
	id := mkdir(t, filepath.Join(dir, "ctr"))
	podID, _ := cgroupid.ID(dir)
	if w.walk() {
		t.Fatal("walk says a pod still waits for its cgroup")
	}
	e := next("the cgroup")
	if e.New == nil || e.New.Cgroups[podID] != dir || len(e.New.Cgroups) != 1 {
		t.Fatalf("cgroup event %+v; want the pod directory %s (ID %d) only", e.New, dir, podID)
	}
	if p, err := w.Lookup(id); err != nil || p.Cgroups[podID] != dir {
		t.Fatalf("Lookup of the container = %+v, %v", p, err)
	}

	w.upsert(podObject("team-a", "client", uidA, map[string]string{"app": "client", "egressd.io/exempt": "true"}))
	if e := next("the label"); e.Old == nil || e.New == nil || e.New.Labels["egressd.io/exempt"] != "true" || e.Old.Labels["egressd.io/exempt"] != "" || len(e.New.Cgroups) != 1 {
		t.Fatalf("label event %+v -> %+v", e.Old, e.New)
	}
	// The same object again (a resync) is no event: the next one is the
	// deletion below.
	w.upsert(podObject("team-a", "client", uidA, map[string]string{"app": "client", "egressd.io/exempt": "true"}))

	late := make(chan Event, 4)
	defer w.Subscribe(func(e Event) { late <- e })()
	select {
	case e := <-late:
		if e.New == nil || e.New.Name != "client" {
			t.Fatalf("late subscriber's first event %+v", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a late subscriber was not told of the pod known")
	}

	w.remove(podObject("team-a", "client", uidA, nil))
	if e := next("the deletion"); e.New != nil || e.Old == nil || e.Old.Name != "client" {
		t.Fatalf("deletion event %+v", e)
	}
}
