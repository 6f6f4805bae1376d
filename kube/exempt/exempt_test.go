package exempt

import (
	"bytes"
	"log/slog"
	"maps"
	"strings"
	"testing"

	"github.com/egressd/egressd/kube/pods"
	"github.com/egressd/egressd/redirect"
)

// bits is a Map as redirect.Redirector keeps it: reasons per cgroup ID,
// the entry gone when the last reason goes.
type bits map[uint64]redirect.ExemptReason

func (b bits) SetExempt(id uint64, _ string, why redirect.ExemptReason, on bool) error {
	if on {
		b[id] |= why
	} else {
		b[id] &^= why
	}
	if b[id] == 0 {
		delete(b, id)
	}
	return nil
}

func (b bits) ReplaceExempt(why redirect.ExemptReason, cgroups map[uint64]string) error {
	for id := range b {
		if _, keep := cgroups[id]; !keep {
			b.SetExempt(id, "", why, false)
		}
	}
	for id := range cgroups {
		b.SetExempt(id, "", why, true)
	}
	return nil
}

var policy = Policy{Namespaces: []string{"kube-system"}, LabelNamespaces: []string{"infra"}, SystemNamespace: "egressd-system"}

func TestReasons(t *testing.T) {
	ex := map[string]string{LabelExempt: "true"}
	for _, c := range []struct {
		ns     string
		labels map[string]string
		want   redirect.ExemptReason
		why    string
	}{
		{"kube-system", nil, redirect.ExemptNamespace, "listed by --exempt-namespace"},
		{"infra", ex, redirect.ExemptLabel, "which --exempt-label-namespace lists"},
		{"infra", map[string]string{LabelExempt: "yes"}, 0, "no exemption"},
		{"infra", nil, 0, "no exemption"},
		// A tenant labelling its own pod: ignored, and explain says so.
		{"tenant", ex, 0, "ignored: namespace tenant is not listed"},
		{"tenant", map[string]string{LabelGateway: "true", LabelAgent: "true"}, 0, "only egressd's namespace"},
		{"egressd-system", map[string]string{LabelGateway: "true"}, redirect.ExemptGateway, "egressd.io/gateway=true in egressd's namespace"},
		{"egressd-system", map[string]string{LabelAgent: "true"}, redirect.ExemptAgent, "egressd.io/agent=true"},
		{"egressd-system", ex, 0, "ignored"},
		{"kube-system", ex, redirect.ExemptNamespace, "ignored: namespace kube-system"},
	} {
		if got := policy.Reasons(c.ns, c.labels); got != c.want {
			t.Errorf("%s %v: %s, want %s", c.ns, c.labels, got, c.want)
		}
		if got := policy.Explain(c.ns, c.labels); !strings.Contains(got, c.why) {
			t.Errorf("%s %v: explained %q, want %q in it", c.ns, c.labels, got, c.why)
		}
	}
	if got := (Policy{}).Reasons("", map[string]string{LabelGateway: "true"}); got != 0 {
		t.Errorf("no system namespace: %s", got)
	}
}

func pod(ns, name, uid string, labels map[string]string, cgroups map[uint64]string) *pods.Pod {
	return &pods.Pod{Namespace: ns, Name: name, UID: uid, Labels: labels, Cgroups: cgroups}
}

func TestController(t *testing.T) {
	m := bits{7: redirect.ExemptFlag, 99: redirect.ExemptLabel | redirect.ExemptFlag, 98: redirect.ExemptGateway}
	var logs bytes.Buffer
	c := New(policy, m, slog.New(slog.NewTextHandler(&logs, nil)))
	ex := map[string]string{LabelExempt: "true"}

	// A labelled pod before its cgroup exists: nothing to put in the map
	// yet; its cgroup appearing exempts it, with a log line.
	c.Handle(pods.Event{New: pod("infra", "a", "u1", ex, nil)})
	if st, ok := c.Pod("infra", "a"); !ok || !st.Exempt || len(st.Cgroups) != 0 {
		t.Fatalf("pod without cgroups: %+v %v", st, ok)
	}
	c.Handle(pods.Event{Old: pod("infra", "a", "u1", ex, nil), New: pod("infra", "a", "u1", ex, map[uint64]string{1: "/cg/pod-u1"})})
	if m[1] != redirect.ExemptLabel || !strings.Contains(logs.String(), `msg="pod exempt: not redirected" namespace=infra pod=a reason=label`) {
		t.Fatalf("labelled pod: map %v\n%s", m, logs.String())
	}
	// The same label on a tenant's pod and the gateway label outside
	// egressd's namespace: governed.
	c.Handle(pods.Event{New: pod("tenant", "b", "u2", ex, map[uint64]string{2: "/cg/pod-u2"})})
	c.Handle(pods.Event{New: pod("tenant", "g", "u3", map[string]string{LabelGateway: "true"}, map[uint64]string{3: "/cg/pod-u3"})})
	if _, ok := m[2]; ok {
		t.Fatalf("tenant's labelled pod exempt: %v", m)
	}
	if _, ok := m[3]; ok {
		t.Fatalf("tenant's gateway-labelled pod exempt: %v", m)
	}
	if st, _ := c.Pod("tenant", "b"); st.Exempt || !strings.Contains(st.Why, "ignored") {
		t.Errorf("tenant pod status: %+v", st)
	}
	// A gateway pod and a kube-system one.
	c.Handle(pods.Event{New: pod("egressd-system", "gw", "u4", map[string]string{LabelGateway: "true"}, map[uint64]string{4: "/cg/pod-u4"})})
	c.Handle(pods.Event{New: pod("kube-system", "kp", "u5", nil, map[uint64]string{5: "/cg/pod-u5"})})
	if m[4] != redirect.ExemptGateway || m[5] != redirect.ExemptNamespace {
		t.Fatalf("gateway and kube-system pods: %v", m)
	}

	// Once listed: what a previous agent left for pods gone (98, and 99's
	// label) is dropped; the flag's entries stay.
	c.Sync([]pods.Pod{
		*pod("infra", "a", "u1", ex, map[uint64]string{1: "/cg/pod-u1"}),
		*pod("tenant", "b", "u2", ex, map[uint64]string{2: "/cg/pod-u2"}),
		*pod("egressd-system", "gw", "u4", map[string]string{LabelGateway: "true"}, map[uint64]string{4: "/cg/pod-u4"}),
		*pod("kube-system", "kp", "u5", nil, map[uint64]string{5: "/cg/pod-u5"}),
	})
	want := bits{1: redirect.ExemptLabel, 4: redirect.ExemptGateway, 5: redirect.ExemptNamespace, 7: redirect.ExemptFlag, 99: redirect.ExemptFlag}
	if !maps.Equal(m, want) {
		t.Fatalf("after Sync: %v, want %v", m, want)
	}
	if _, ok := c.Pod("tenant", "g"); ok {
		t.Error("pod not in the list still known after Sync")
	}
	if got := c.Exempt(); len(got) != 3 || got[0].Name != "gw" || got[1].Name != "a" || got[2].Name != "kp" {
		t.Errorf("Exempt: %+v", got)
	}

	// The label taken away: governed again, logged; the pod deleted: gone.
	logs.Reset()
	c.Handle(pods.Event{Old: pod("infra", "a", "u1", ex, nil), New: pod("infra", "a", "u1", nil, map[uint64]string{1: "/cg/pod-u1"})})
	if _, ok := m[1]; ok || !strings.Contains(logs.String(), "pod no longer exempt") {
		t.Fatalf("label removed: %v\n%s", m, logs.String())
	}
	c.Handle(pods.Event{Old: pod("kube-system", "kp", "u5", nil, nil)})
	if _, ok := m[5]; ok {
		t.Fatalf("deleted pod still exempt: %v", m)
	}
	// A pod's cgroup replaced (a restart of its sandbox): the new one
	// exempt, the old one not.
	c.Handle(pods.Event{New: pod("egressd-system", "gw", "u4", map[string]string{LabelGateway: "true"}, map[uint64]string{6: "/cg/pod-u4"})})
	if _, ok := m[4]; ok || m[6] != redirect.ExemptGateway {
		t.Fatalf("cgroup replaced: %v", m)
	}
}
