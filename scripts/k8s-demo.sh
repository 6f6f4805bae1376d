#!/usr/bin/env bash
# scripts/k8s-demo.sh: egressd's DaemonSet on a single-node cluster, in one
# command (README, "Try it on a single-node cluster"). Run as root:
#
#	sudo scripts/k8s-demo.sh          # start, apply deploy/, show, tear down
#	sudo scripts/k8s-demo.sh --keep   # leave the cluster up to play with
#
# It starts the cluster (scripts/k8s-up.sh; the first run builds Kubernetes,
# 7-15 min), applies deploy/ through an overlay as README's "Kubernetes"
# section shows, runs a web server in the cluster's "external" network
# namespace and a client pod, and shows a request the rules allow (200) and
# one they do not (403 from egressd). Exit 0 when both came out so.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH=/usr/local/bin:$PATH:/usr/local/go/bin:/usr/sbin:/sbin
# shellcheck source=k8s-env.sh
. "$repo/scripts/k8s-env.sh"
keep=${1:-}
say() { printf '\n\033[1m%s\033[0m\n' "$*" >&2; }

"$repo/scripts/k8s-up.sh" >/dev/null
bin=$("$repo/scripts/k8s-build.sh")
kubectl() { "$bin/kubectl" "$@"; }
cleanup() {
	[ -z "${httpd:-}" ] || kill "$httpd" 2>/dev/null || true
	if [ "$keep" = --keep ]; then
		say "cluster left up: KUBECONFIG=$KUBECONFIG $bin/kubectl get pods -A; scripts/k8s-down.sh removes it"
	else
		"$repo/scripts/k8s-down.sh"
	fi
}
trap cleanup EXIT

www=$K8S_STATE/www
mkdir -p "$www"
echo "hello from the upstream" >"$www/index.html"
ip netns exec "$K8S_EXT_NS" busybox httpd -f -p "$K8S_EXT_IP:80" -h "$www" &
httpd=$!

cg2=$(findmnt -n -t cgroup2 -o TARGET | head -n1)
overlay=$K8S_STATE/overlay
mkdir -p "$overlay"
cat >"$overlay/kustomization.yaml" <<YAML
resources:
  - $(realpath --relative-to="$overlay" "$repo/deploy")
patches:
  - patch: |-
      apiVersion: apps/v1
      kind: DaemonSet
      metadata: {name: egressd, namespace: egressd-system}
      spec:
        template:
          spec:
            containers:
              - name: egressd
                env:
                  - name: EGRESSD_CGROUP
                    value: $cg2/kubepods
                  - name: EGRESSD_EXCLUDE_CIDR
                    value: $K8S_POD_CIDR,$K8S_SVC_CIDR,$K8S_NODE_IP/32
  - patch: |-
      apiVersion: v1
      kind: ConfigMap
      metadata: {name: egressd-rules, namespace: egressd-system}
      data:
        demo.yaml: |
          kind: EgressRule
          metadata: {name: demo}
          spec:
            destination: {service: allowed.e2e.test}
            ports: [{port: 80, protocol: http}]
YAML
say "kubectl apply -k $overlay   (deploy/ with this node's cgroup and ranges)"
kubectl apply -k "$overlay"
kubectl -n egressd-system rollout status ds/egressd --timeout=120s
kubectl apply -f - <<YAML
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: default}
spec:
  terminationGracePeriodSeconds: 1
  hostAliases: [{ip: "$K8S_EXT_IP", hostnames: [allowed.e2e.test, denied.e2e.test]}]
  containers: [{name: client, image: "$K8S_CLIENT_IMAGE", imagePullPolicy: Never, command: [sleep, "3600"]}]
YAML
kubectl wait --for=condition=Ready pod/client --timeout=120s

ok=1
say "allowed: kubectl exec client -- fetch http://allowed.e2e.test/"
out=$(kubectl exec client -- fetch http://allowed.e2e.test/ 2>&1) || true
echo "$out"
grep -q "hello from the upstream" <<<"$out" || { echo "FAIL: want the upstream's page"; ok=; }
say "denied: kubectl exec client -- fetch http://denied.e2e.test/"
out=$(kubectl exec client -- fetch http://denied.e2e.test/ 2>&1) || true
echo "$out"
grep -q "HTTP 403" <<<"$out" || { echo "FAIL: want 403 from egressd"; ok=; }
say "egressd's access log: kubectl -n egressd-system logs ds/egressd --tail=2"
kubectl -n egressd-system logs ds/egressd --tail=2
[ -n "$ok" ] && say "demo: allowed 200, denied 403" || { say "demo: FAILED"; exit 1; }
