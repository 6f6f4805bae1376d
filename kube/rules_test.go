package kube

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/egressd/egressd/kube/internal/apiclient"
	"github.com/egressd/egressd/kube/pods"
	"github.com/egressd/egressd/rules"
)

// These tests drive Rules' handler with objects as the informer hands
// them over (maps, as decoded from the API's JSON); the informer
// against a real API server is tested on the cluster (e2e/k8s).

type fixedSource struct{ s *rules.Set }

func (f fixedSource) Current() *rules.Set { return f.s }

func egressRule(ns, name, service string, ports ...any) apiclient.Object {
	ps := make([]any, 0, len(ports)/2)
	for i := 0; i+1 < len(ports); i += 2 {
		ps = append(ps, map[string]any{"port": ports[i], "protocol": ports[i+1]})
	}
	return apiclient.Object{
		"apiVersion": "config.istio.io/v1alpha2", "kind": "EgressRule",
		"metadata": map[string]any{"namespace": ns, "name": name, "uid": "u-" + name, "resourceVersion": "1"},
		"spec":     map[string]any{"destination": map[string]any{"service": service}, "ports": ps},
	}
}

func newTestRules(t *testing.T, files string, log *bytes.Buffer) (*Rules, *int) {
	t.Helper()
	s, _, err := rules.LoadDocuments(rules.Document{Source: "files", Data: []byte(files)})
	if err != nil {
		t.Fatal(err)
	}
	client := apiclient.ForServer("http://127.0.0.1:1") // never dialed
	changes := new(int)
	r, err := NewRules(RulesOptions{Client: client, Files: fixedSource{s}, GlobalNamespace: "egressd",
		OnChange: func() { *changes++ }, Logger: slog.New(slog.NewTextHandler(log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return r, changes
}

func allows(src rules.Source, host string, port uint16) bool {
	_, ok := src.Current().Match(host, port)
	return ok
}

const globalFile = `{"kind":"EgressRule","metadata":{"name":"global"},"spec":{"destination":{"service":"global.example"},"ports":[{"port":80,"protocol":"HTTP"}]}}`

func TestRulesPerNamespace(t *testing.T) {
	var log bytes.Buffer
	r, changes := newTestRules(t, globalFile, &log)
	r.change(egressRule("team-a", "a", "a.example", int64(80), "http"), false)
	r.change(egressRule("team-b", "b", "*.b.example", int64(443), "HTTPS"), false)
	r.change(egressRule("egressd", "everyone", "all.example", int64(80), "HTTP"), false)
	if *changes != 3 {
		t.Fatalf("%d changes reported, want 3", *changes)
	}
	a, b := r.For("team-a"), r.For("team-b")
	for _, c := range []struct {
		src  rules.Source
		who  string
		host string
		port uint16
		want bool
	}{
		{a, "team-a", "a.example", 80, true},
		{a, "team-a", "x.b.example", 443, false}, // team B's rule does not open egress for team A
		{a, "team-a", "global.example", 80, true},
		{a, "team-a", "all.example", 80, true}, // the global namespace's
		{b, "team-b", "x.b.example", 443, true},
		{b, "team-b", "a.example", 80, false},
		{b, "team-b", "global.example", 80, true},
		{r.Global(), "a host process", "global.example", 80, true},
		{r.Global(), "a host process", "all.example", 80, true},
		{r.Global(), "a host process", "a.example", 80, false},
		{r.For("team-c"), "team-c (no rules)", "global.example", 80, true},
		{r.For("team-c"), "team-c (no rules)", "a.example", 80, false},
	} {
		if got := allows(c.src, c.host, c.port); got != c.want {
			t.Errorf("%s → %s:%d allowed %v, want %v", c.who, c.host, c.port, got, c.want)
		}
	}
	// A deletion closes what the object opened.
	r.change(egressRule("team-a", "a", "a.example", int64(80), "http"), true)
	if allows(a, "a.example", 80) {
		t.Error("a.example still allowed for team-a after the EgressRule was deleted")
	}
	if st := r.namespace("team-a").Stats(); st.Reloads != 2 || st.Failures != 0 {
		t.Errorf("team-a stats %+v; want 2 applied", st)
	}
}

// TestRulesBadVersionKeepsLastGood: an invalid new version of an object,
// a new object clashing with another of its namespace, and one
// conflicting with the global rules are refused, logged with the
// namespace, name and reason, and counted; what was in force stays.
func TestRulesBadVersionKeepsLastGood(t *testing.T) {
	var log bytes.Buffer
	r, changes := newTestRules(t, globalFile, &log)
	a := r.For("team-a")
	r.change(egressRule("team-a", "api", "api.example", int64(443), "HTTPS"), false)
	if !allows(a, "api.example", 443) {
		t.Fatal("the first, valid version is not in force")
	}
	for _, c := range []struct {
		what string
		obj  apiclient.Object
		want string // in the log line
	}{
		{"a port out of range", egressRule("team-a", "api", "api.example", int64(70000), "HTTPS"), "70000 is out of range"},
		{"an unknown protocol", egressRule("team-a", "api", "api.example", int64(443), "ftp"), `\"ftp\" is not a protocol`},
		{"a bad wildcard", egressRule("team-a", "api", "api.*.example", int64(443), "HTTPS"), "spec.destination.service"},
		{"an unknown field", func() apiclient.Object {
			u := egressRule("team-a", "api", "api.example", int64(443), "HTTPS")
			u["spec"].(map[string]any)["use_egress_proxy"] = true
			return u
		}(), "did you mean useEgressProxy"},
		{"a clash with another object", egressRule("team-a", "other", "api.example", int64(443), "HTTP"), "443"},
		{"a conflict with the global rules", egressRule("team-a", "mine", "global.example", int64(80), "HTTPS"), "conflicts with the global rules"},
	} {
		log.Reset()
		before, changesBefore := r.namespace("team-a").Stats().Failures, *changes
		r.change(c.obj, false)
		if *changes != changesBefore {
			t.Errorf("%s: reported as a change", c.what)
		}
		if !allows(a, "api.example", 443) {
			t.Fatalf("%s: the last good version was displaced", c.what)
		}
		if st := r.namespace("team-a").Stats(); st.Failures != before+1 || !st.LastFailed {
			t.Errorf("%s: stats %+v; want one more refusal, last failed", c.what, st)
		}
		line := log.String()
		for _, want := range []string{"EgressRule refused", "namespace=team-a", "name=" + apiclient.Name(c.obj), c.want} {
			if !strings.Contains(line, want) {
				t.Errorf("%s: log %q lacks %q", c.what, line, want)
			}
		}
		if apiclient.Name(c.obj) != "api" {
			// Gone, the refused object no longer holds the namespace back.
			r.change(c.obj, true)
		}
	}
	if allows(r.Global(), "global.example", 80) != true {
		t.Error("the global rules changed")
	}
	// A refused object is tried again when the namespace changes: once the
	// object it clashed with is gone, it is in force.
	r.change(egressRule("team-a", "later", "later.example", int64(443), "HTTP"), false)
	r.change(egressRule("team-a", "blocker", "later.example", int64(443), "HTTPS"), false)
	r.change(egressRule("team-a", "later", "later.example", int64(443), "HTTP"), true)
	if !allows(a, "later.example", 443) {
		t.Error("blocker, refused while it clashed with later, is not in force once later is deleted")
	}
	// A good version again is taken, and clears the failed state.
	r.change(egressRule("team-a", "api", "api.example", int64(443), "HTTPS", int64(8443), "HTTPS"), false)
	if !allows(a, "api.example", 8443) || r.namespace("team-a").Stats().LastFailed {
		t.Error("a valid version after refused ones was not applied")
	}
}

func TestDocument(t *testing.T) {
	u := egressRule("team-a", "foo", "*.foo.com", int64(80), "http", int64(443), "https")
	u["metadata"].(map[string]any)["annotations"] = map[string]any{"kubectl.kubernetes.io/last-applied-configuration": "{}"}
	u["status"] = map[string]any{"x": 1}
	d, err := Document(u)
	if err != nil {
		t.Fatal(err)
	}
	if d.Source != "EgressRule team-a/foo" {
		t.Errorf("Source %q", d.Source)
	}
	s, _, err := rules.LoadDocuments(d)
	if err != nil {
		t.Fatalf("the object as a document: %v", err)
	}
	if m, ok := s.Match("api.foo.com", 443); !ok || m.Rule.Name != "foo" || m.Port.Protocol != rules.HTTPS {
		t.Errorf("api.foo.com:443 = %+v, %v", m, ok)
	}
	// An object without a spec is refused with the decoder's message.
	delete(u, "spec")
	d, _ = Document(u)
	if _, _, err := rules.LoadDocuments(d); err == nil || !strings.Contains(err.Error(), "EgressRule team-a/foo: spec: missing") {
		t.Errorf("no spec: err %v", err)
	}
}

type lookupFunc func(uint64) (pods.Pod, error)

func (f lookupFunc) Lookup(id uint64) (pods.Pod, error) { return f(id) }

func TestScoper(t *testing.T) {
	var log bytes.Buffer
	r, _ := newTestRules(t, globalFile, &log)
	r.change(egressRule("team-a", "a", "a.example", int64(80), "http"), false)
	lookup := lookupFunc(func(id uint64) (pods.Pod, error) {
		switch id {
		case 1:
			return pods.Pod{Namespace: "team-a", Name: "client-a"}, nil
		case 2:
			return pods.Pod{Namespace: "egressd", Name: "agent"}, nil
		case 3:
			return pods.Pod{}, pods.ErrNotPod
		case 4:
			return pods.Pod{}, &pods.UnknownPodError{UID: "0b7f3a52-9c1e-4d2a-8f6b-1a2b3c4d5e6f", Path: "/kubepods/pod0b7f3a52-9c1e-4d2a-8f6b-1a2b3c4d5e6f"}
		}
		return pods.Pod{}, pods.ErrNoCgroup
	})
	s := NewScoper(lookup, r, slog.New(slog.NewTextHandler(&log, nil)))
	if sc := s.Scope(1); sc.Namespace != "team-a" || sc.Pod != "client-a" || !allows(sc.Rules, "a.example", 80) || !allows(sc.Rules, "global.example", 80) {
		t.Errorf("team-a's pod: %+v", sc)
	}
	if sc := s.Scope(2); sc.Namespace != "egressd" || sc.Rules != r.Global() {
		t.Errorf("a pod of the global namespace: %+v, want the global rules", sc)
	}
	log.Reset()
	if sc := s.Scope(3); sc.Rules != nil || sc.Namespace != "" || log.Len() != 0 {
		t.Errorf("a host process: %+v, log %q; want the global rules, quietly", sc, log.String())
	}
	for _, id := range []uint64{4, 5} {
		log.Reset()
		if sc := s.Scope(id); sc.Rules != nil || sc.Namespace != "" {
			t.Errorf("cgroup %d: %+v, want the global rules", id, sc)
		}
		if !strings.Contains(log.String(), "unidentified pod") || !strings.Contains(log.String(), fmt.Sprint("cgroup_id=", id)) {
			t.Errorf("cgroup %d: log %q; want a warning", id, log.String())
		}
		log.Reset()
		s.Scope(id)
		if log.Len() != 0 {
			t.Errorf("cgroup %d: warned twice within a minute: %q", id, log.String())
		}
	}
}
