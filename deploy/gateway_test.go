package deploy_test

import (
	"maps"
	"os"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// TestGatewayTier checks deploy/gateway/, the component adding the
// gateway tier to deploy/: what README "Dedicated egress nodes" promises of it.
func TestGatewayTier(t *testing.T) {
	b, err := os.ReadFile("gateway/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
		Patches    []struct {
			Path string `json:"path"`
		} `json:"patches"`
	}
	if err := yaml.UnmarshalStrict(b, &k); err != nil {
		t.Fatal(err)
	}
	// A component (an overlay of deploy/ adds it), not an overlay itself:
	// kustomize refuses a kustomization below the base it includes.
	if k.Kind != "Component" || !slices.Equal(k.Resources, []string{"gateway.yaml"}) || len(k.Patches) != 1 || k.Patches[0].Path != "daemonset-egress-proxy.yaml" {
		t.Fatalf("gateway/kustomization.yaml: kind %s, resources %v, patches %v: want a Component of gateway.yaml and the DaemonSet patch", k.Kind, k.Resources, k.Patches)
	}
	objs := decodeDir(t, "gateway")
	d, ok := objs["Deployment/egressd-gateway"].(*appsv1.Deployment)
	if !ok {
		t.Fatal("no Deployment egressd-gateway")
	}
	pod := d.Spec.Template
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Error("replicas: at least 2, so that one going away leaves another")
	}
	spread := false
	for _, c := range pod.Spec.TopologySpreadConstraints {
		if c.TopologyKey == "kubernetes.io/hostname" && c.WhenUnsatisfiable == corev1.ScheduleAnyway &&
			c.LabelSelector != nil && maps.Equal(c.LabelSelector.MatchLabels, d.Spec.Selector.MatchLabels) {
			spread = true
		}
	}
	if !spread {
		t.Error("no topology spread across nodes (kubernetes.io/hostname) that still schedules on one node (ScheduleAnyway)")
	}
	if pod.Labels["egressd.io/gateway"] != "true" {
		t.Error(`the gateway's pods must carry egressd.io/gateway: "true": the agents exempt them by it`)
	}
	if pod.Spec.HostNetwork {
		t.Error("the gateway needs no host network")
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	if !slices.Equal(c.Args, []string{"gateway"}) {
		t.Errorf("args %v, want [gateway]", c.Args)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if env["EGRESSD_LISTEN"] != ":15080" || ports["proxy"] != 15080 {
		t.Errorf("EGRESSD_LISTEN %q, port proxy %d: want :15080 on both", env["EGRESSD_LISTEN"], ports["proxy"])
	}
	if env["EGRESSD_ADMIN"] != ":15091" || ports["admin"] != 15091 {
		t.Errorf("EGRESSD_ADMIN %q, port admin %d: the kubelet probes the pod address: want :15091", env["EGRESSD_ADMIN"], ports["admin"])
	}
	for name, p := range map[string]*corev1.Probe{"/readyz": c.ReadinessProbe, "/healthz": c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != name || p.HTTPGet.Port.String() != "admin" {
			t.Errorf("probe %s: want an httpGet on the admin port", name)
		}
	}
	rulesFromConfigMap := false
	for _, v := range pod.Spec.Volumes {
		if v.ConfigMap != nil && v.ConfigMap.Name == "egressd-rules" {
			for _, m := range c.VolumeMounts {
				rulesFromConfigMap = rulesFromConfigMap || (m.Name == v.Name && m.MountPath == env["EGRESSD_RULES"])
			}
		}
	}
	if !rulesFromConfigMap {
		t.Error("EGRESSD_RULES must be the egressd-rules ConfigMap: the same rules as the agents")
	}
	if sc := c.SecurityContext; sc == nil || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
		len(sc.Capabilities.Add) > 0 || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Error("the gateway runs as non-root with no capability")
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		t.Error("no preStop sleep: a replica would stop accepting before the Service dropped it")
	}

	svc, ok := objs["Service/egressd-gateway"].(*corev1.Service)
	if !ok {
		t.Fatal("no Service egressd-gateway")
	}
	if !maps.Equal(svc.Spec.Selector, d.Spec.Selector.MatchLabels) {
		t.Errorf("Service selector %v, Deployment's %v", svc.Spec.Selector, d.Spec.Selector.MatchLabels)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != "proxy" || svc.Spec.Ports[0].TargetPort.String() != "proxy" {
		t.Errorf("Service ports %+v: want one named proxy, to the container's proxy port", svc.Spec.Ports)
	}
	pdb, ok := objs["PodDisruptionBudget/egressd-gateway"].(*policyv1.PodDisruptionBudget)
	if !ok {
		t.Fatal("no PodDisruptionBudget egressd-gateway")
	}
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() < 1 || pdb.Spec.Selector == nil ||
		!maps.Equal(pdb.Spec.Selector.MatchLabels, d.Spec.Selector.MatchLabels) {
		t.Errorf("PodDisruptionBudget %+v: want minAvailable >= 1 of the gateway's pods", pdb.Spec)
	}

	ds, ok := objs["DaemonSet/egressd"].(*appsv1.DaemonSet)
	if !ok {
		t.Fatal("no DaemonSet patch")
	}
	var proxy string
	for _, e := range ds.Spec.Template.Spec.Containers[0].Env {
		if e.Name == "EGRESSD_EGRESS_PROXY" {
			proxy = e.Value
		}
	}
	// The Service's link variables: <NAME>_SERVICE_HOST and
	// <NAME>_SERVICE_PORT_<PORT NAME>, upper case, dashes as underscores.
	prefix := strings.ToUpper(strings.ReplaceAll(svc.Name, "-", "_"))
	want := "http://$(" + prefix + "_SERVICE_HOST):$(" + prefix + "_SERVICE_PORT_" + strings.ToUpper(svc.Spec.Ports[0].Name) + ")"
	if proxy != want {
		t.Errorf("the agents' EGRESSD_EGRESS_PROXY %q, want the Service %q", proxy, want)
	}
	checkEnvAreFlags(t, map[string]corev1.EnvVar{"EGRESSD_EGRESS_PROXY": {}})
}
