// Package deploy_test checks the Kubernetes manifests of deploy/: every
// document decodes strictly into its Kubernetes API type (a misspelt field
// fails), and the DaemonSet keeps the properties the README promises.
package deploy_test

import (
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"

	"github.com/egressd/egressd/rules"
)

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// decodeAll strictly decodes every document of every *.yaml file here,
// keyed by "Kind/name".
func decodeAll(t *testing.T) map[string]any { return decodeDir(t, ".") }

// decodeDir is decodeAll for the manifests of dir.
func decodeDir(t *testing.T, dir string) map[string]any {
	t.Helper()
	files := manifestsIn(t, dir)
	objs := map[string]any{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range docSep.Split(string(b), -1) {
			var meta struct {
				Kind     string `json:"kind"`
				Metadata struct {
					Name string `json:"name"`
				} `json:"metadata"`
			}
			if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
				t.Fatalf("%s document %d: %v", f, i+1, err)
			}
			if meta.Kind == "" {
				continue // comments only
			}
			var obj any
			switch meta.Kind {
			case "Namespace":
				obj = &corev1.Namespace{}
			case "ServiceAccount":
				obj = &corev1.ServiceAccount{}
			case "ConfigMap":
				obj = &corev1.ConfigMap{}
			case "DaemonSet":
				obj = &appsv1.DaemonSet{}
			case "Deployment":
				obj = &appsv1.Deployment{}
			case "Service":
				obj = &corev1.Service{}
			case "PodDisruptionBudget":
				obj = &policyv1.PodDisruptionBudget{}
			case "CustomResourceDefinition":
				obj = &apiextensionsv1.CustomResourceDefinition{}
			case "ClusterRole":
				obj = &rbacv1.ClusterRole{}
			case "ClusterRoleBinding":
				obj = &rbacv1.ClusterRoleBinding{}
			default:
				t.Fatalf("%s document %d: kind %s: add it to this test", f, i+1, meta.Kind)
			}
			if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
				t.Errorf("%s document %d (%s %s): %v", f, i+1, meta.Kind, meta.Metadata.Name, err)
				continue
			}
			objs[meta.Kind+"/"+meta.Metadata.Name] = obj
		}
	}
	return objs
}

// manifests lists the Kubernetes manifests here: every *.yaml but the
// kustomization.
func manifests(t *testing.T) []string { return manifestsIn(t, ".") }

func manifestsIn(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	return slices.DeleteFunc(files, func(f string) bool { return filepath.Base(f) == "kustomization.yaml" })
}

// TestKustomizationListsEveryManifest: `kubectl apply -k deploy/` (README's
// one step) applies every manifest here, so none is forgotten and the
// Namespace comes with them (kustomize orders it first).
func TestKustomizationListsEveryManifest(t *testing.T) {
	b, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatal(err)
	}
	got := slices.Sorted(slices.Values(k.Resources))
	if want := manifests(t); !slices.Equal(got, want) {
		t.Errorf("kustomization.yaml resources %v, want every manifest %v", got, want)
	}
}

func TestManifestsDecodeStrictly(t *testing.T) {
	objs := decodeAll(t)
	for _, want := range []string{"Namespace/egressd-system", "ServiceAccount/egressd", "ConfigMap/egressd-rules", "DaemonSet/egressd"} {
		if objs[want] == nil {
			t.Errorf("missing %s", want)
		}
	}
}

// TestStrictDecodingCatchesTypos guards the guard: a misspelt field must fail.
func TestStrictDecodingCatchesTypos(t *testing.T) {
	doc := "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      hostNetwrok: true\n"
	if err := yaml.UnmarshalStrict([]byte(doc), &appsv1.DaemonSet{}); err == nil {
		t.Fatal("a misspelt field decoded without error")
	}
}

func TestDaemonSet(t *testing.T) {
	objs := decodeAll(t)
	ds, ok := objs["DaemonSet/egressd"].(*appsv1.DaemonSet)
	if !ok {
		t.Fatal("no DaemonSet egressd")
	}
	pod := ds.Spec.Template.Spec
	if !pod.HostNetwork {
		t.Error("hostNetwork must be true: pods reach the proxy at the node address")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Containers))
	}
	if pod.DNSPolicy != corev1.DNSDefault {
		t.Errorf("dnsPolicy %q: Default, so that the agent's upstream lookups use the node's resolvers, not the pods' search list", pod.DNSPolicy)
	}
	c := pod.Containers[0]
	if tag := c.Image[strings.LastIndex(c.Image, ":")+1:]; !strings.Contains(c.Image, ":") || tag == "latest" {
		t.Errorf("image %s: a versioned tag, so that a preloaded image is used", c.Image)
	}
	if c.ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("imagePullPolicy %q, want IfNotPresent", c.ImagePullPolicy)
	}
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("no securityContext with capabilities")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("privileged: the capabilities are named instead")
	}
	if !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Error("capabilities must drop ALL and add back what is needed")
	}
	for _, cap := range sc.Capabilities.Add {
		if !slices.Contains([]corev1.Capability{"BPF", "NET_ADMIN", "PERFMON"}, cap) {
			t.Errorf("capability %s added: justify it and extend this test", cap)
		}
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Error("liveness probe must GET /healthz")
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Error("readiness probe must GET /readyz")
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
		t.Error("cpu and memory requests must be set")
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	if e := env["EGRESSD_NODE_NAME"]; e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		t.Error("EGRESSD_NODE_NAME must come from the downward API (spec.nodeName): the agent watches its node's pods")
	}
	if env["EGRESSD_KUBERNETES"].Value != "true" {
		t.Error("EGRESSD_KUBERNETES must be true: EgressRules from the API, scoped per namespace")
	}
	if pod.AutomountServiceAccountToken == nil || !*pod.AutomountServiceAccountToken || pod.ServiceAccountName != "egressd" {
		t.Error("the pod must run as ServiceAccount egressd with its token mounted: the agent reads the API")
	}
	if e := env["EGRESSD_NODE_ADDR"]; e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "status.hostIP" {
		t.Error("EGRESSD_NODE_ADDR must come from the downward API (status.hostIP)")
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	if env["EGRESSD_RULES"].Value != mounts["rules"] {
		t.Errorf("EGRESSD_RULES %q is not the rules mount %q", env["EGRESSD_RULES"].Value, mounts["rules"])
	}
	if !strings.HasPrefix(env["EGRESSD_CGROUP"].Value, mounts["cgroup"]+"/") {
		t.Errorf("EGRESSD_CGROUP %q is not below the cgroup mount %q", env["EGRESSD_CGROUP"].Value, mounts["cgroup"])
	}
	if mounts["bpffs"] == "" {
		t.Error("no bpffs mount: pins would not outlive the container")
	}
	// Its own pins: the default <bpffs>/egressd would take over an egressd
	// started by hand on the node.
	if pd := env["EGRESSD_PIN_DIR"].Value; !strings.HasPrefix(pd, mounts["bpffs"]+"/") || pd == mounts["bpffs"]+"/egressd" {
		t.Errorf("EGRESSD_PIN_DIR %q: a directory of its own below the bpffs mount %q", pd, mounts["bpffs"])
	}
	checkSurge(t, ds)
	checkEnvAreFlags(t, env)
}

// checkSurge: an update starts the new agent next to the old one (which
// hands its sockets over) and never leaves a node without one; and nothing
// keeps two agent pods from one node.
func checkSurge(t *testing.T, ds *appsv1.DaemonSet) {
	t.Helper()
	ru := ds.Spec.UpdateStrategy.RollingUpdate
	if ds.Spec.UpdateStrategy.Type != appsv1.RollingUpdateDaemonSetStrategyType || ru == nil ||
		ru.MaxSurge == nil || ru.MaxSurge.IntValue() != 1 || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
		t.Errorf("updateStrategy %+v: want RollingUpdate with maxSurge 1, maxUnavailable 0", ds.Spec.UpdateStrategy)
	}
	for _, c := range ds.Spec.Template.Spec.Containers {
		if len(c.Ports) > 0 {
			t.Errorf("container %s declares ports: with hostNetwork they are hostPorts, and the surge pod could not be scheduled", c.Name)
		}
	}
}

// checkEnvAreFlags asks the real binary which flags `run` has, so that an
// EGRESSD_* variable naming no flag fails here instead of being ignored.
func checkEnvAreFlags(t *testing.T, env map[string]corev1.EnvVar) {
	t.Helper()
	out, _ := exec.Command("go", "run", "-buildvcs=false", "../cmd/egressd", "run", "-h").CombinedOutput()
	help := string(out)
	if !strings.Contains(help, "-rules") {
		t.Fatalf("egressd run -h gave no flags:\n%s", help)
	}
	for name := range env {
		flag := "-" + strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(name, "EGRESSD_")), "_", "-")
		if !regexp.MustCompile(`(?m)^\s+` + regexp.QuoteMeta(flag) + `\b`).MatchString(help) {
			t.Errorf("env %s: egressd run has no flag %s", name, flag)
		}
	}
}

// TestConfigMapRulesLoad: the example ConfigMap's rules are valid.
func TestConfigMapRulesLoad(t *testing.T) {
	cm, ok := decodeAll(t)["ConfigMap/egressd-rules"].(*corev1.ConfigMap)
	if !ok {
		t.Fatal("no ConfigMap egressd-rules")
	}
	dir := t.TempDir()
	for name, data := range cm.Data {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	set, _, err := rules.Load(dir)
	if err != nil {
		t.Fatalf("rules of the example ConfigMap: %v", err)
	}
	if m, ok := set.Match("api.foo.com", 443); !ok || m.Port.Protocol != rules.HTTPS {
		t.Errorf("api.foo.com:443 should match the seed rule as HTTPS, got %+v %v", m, ok)
	}
}

// TestRBAC: the agents' ServiceAccount may get, list and watch EgressRules
// and pods, and nothing else.
func TestRBAC(t *testing.T) {
	objs := decodeAll(t)
	sa, ok := objs["ServiceAccount/egressd"].(*corev1.ServiceAccount)
	if !ok || sa.AutomountServiceAccountToken != nil && !*sa.AutomountServiceAccountToken {
		t.Fatal("ServiceAccount egressd missing, or its token not mounted")
	}
	role, ok := objs["ClusterRole/egressd"].(*rbacv1.ClusterRole)
	if !ok {
		t.Fatal("no ClusterRole egressd")
	}
	want := map[string]string{"config.istio.io/egressrules": "get,list,watch", "/pods": "get,list,watch"}
	got := map[string]string{}
	for _, r := range role.Rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				got[g+"/"+res] = strings.Join(slices.Sorted(slices.Values(r.Verbs)), ",")
			}
		}
		if len(r.ResourceNames) > 0 || len(r.NonResourceURLs) > 0 {
			t.Errorf("rule %+v: resource names or URLs", r)
		}
	}
	if !maps.Equal(got, want) {
		t.Errorf("ClusterRole egressd grants %v, want %v", got, want)
	}
	b, ok := objs["ClusterRoleBinding/egressd"].(*rbacv1.ClusterRoleBinding)
	if !ok {
		t.Fatal("no ClusterRoleBinding egressd")
	}
	ns := objs["DaemonSet/egressd"].(*appsv1.DaemonSet).Namespace
	if b.RoleRef.Kind != "ClusterRole" || b.RoleRef.Name != "egressd" || len(b.Subjects) != 1 ||
		b.Subjects[0].Kind != "ServiceAccount" || b.Subjects[0].Name != sa.Name || b.Subjects[0].Namespace != ns || sa.Namespace != ns {
		t.Errorf("ClusterRoleBinding egressd: %+v to %+v; want ClusterRole egressd to ServiceAccount %s/egressd", b.RoleRef, b.Subjects, ns)
	}
}
