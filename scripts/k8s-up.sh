#!/usr/bin/env bash
# scripts/k8s-up.sh starts a real single-node Kubernetes cluster on this
# machine, for the cluster tests (e2e/k8s) and for trying egressd
# (scripts/k8s-demo.sh); scripts/k8s-down.sh removes every trace of it.
# Run as root:
#
#	scripts/k8s-up.sh      # prints the kubeconfig path when the node is Ready
#
# What runs, all as processes of this machine (recorded by PID):
#   - etcd, containerd, runc and the CNI plugins from Debian's packages
#     (scripts/provision.sh installs them);
#   - kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
#     kube-proxy (for the kubernetes service IP) built by scripts/k8s-build.sh
#     at the version pinned in scripts/k8s/go.mod, cached outside the tree;
#   - images built here, no registry: egressd (scripts/image.sh, the release
#     recipe), a pause image (scripts/pause) and a client image (static
#     busybox), imported with `ctr -n k8s.io images import`.
#
# Addresses, all in the benchmarking range 198.18.0.0/15 (never 10/8,
# 172.16/12, 192.168/16): the node 198.18.160.1 on a veth (egk8s0; this
# kernel may have no dummy driver), pods 198.18.128.0/20 on the CNI bridge
# egk8sbr0, services 198.18.144.0/20 (the API server at 198.18.144.1), and
# an "external" network namespace egk8s-ext at 198.18.161.2, routed through
# the host (198.18.161.1): what the pods' egress goes to in the tests. Pod
# traffic is not masqueraded, so an upstream tells a pod's own connection
# (from 198.18.128.x) from egressd's (from 198.18.161.1).
#
# Mounts: the daemons run in a mount namespace of their own (unshare -m)
# whose mounts are made shared inside it, with a bpffs of its own at
# /sys/fs/bpf, so the kubelet's HostToContainer propagation works on a host
# whose mounts are private, and nothing is mounted, or changed, in the
# host's mount table.
#
# This machine's quirks handled: a hybrid cgroup layout (the kubelet's
# cgroupfs driver on the v1 controllers, runc also puts pods in the v2 tree
# at /sys/fs/cgroup/unified/kubepods, which is what EGRESSD_CGROUP names
# there); no CAP_SYS_RESOURCE (containerd's restrict_oom_score_adj); no
# swap accounting (failSwapOn false).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH=/usr/local/bin:$PATH:/usr/local/go/bin:/usr/sbin:/sbin
# shellcheck source=k8s-env.sh
. "$repo/scripts/k8s-env.sh"

log() { printf 'k8s-up: %s\n' "$*" >&2; }
die() {
	log "$*"
	exit 1
}

[ "$(id -u)" -eq 0 ] || die "run me as root"
if [ -e "$K8S_STATE/pids" ] && [ -n "$(ls -A "$K8S_STATE/pids" 2>/dev/null)" ]; then
	die "a cluster is already up ($K8S_STATE); scripts/k8s-down.sh first"
fi
for c in etcd containerd runc ctr iptables unshare openssl; do
	command -v "$c" >/dev/null || die "$c missing: run scripts/provision.sh"
done
[ -x /usr/lib/cni/bridge ] || die "CNI plugins missing (containernetworking-plugins): run scripts/provision.sh"

bin=$("$repo/scripts/k8s-build.sh")
cg2=$(findmnt -n -t cgroup2 -o TARGET | head -n1)
[ -n "$cg2" ] || die "no cgroup v2 mount"
K8S_DAEMON_CG=$cg2/egressd-k8s
mkdir -p "$K8S_STATE"/{pids,logs,pki,cni,images} "$K8S_DATA"
# Whatever fails from here on, take down what was started.
failed() {
	local l
	for l in "$K8S_STATE"/logs/*.log; do
		[ -s "$l" ] && { echo "--- $l (tail)"; tail -n 15 "$l"; }
	done >&2
	log "failed; tearing down"
	"$repo/scripts/k8s-down.sh" >&2 || true
}
trap 'rc=$?; [ $rc -eq 0 ] || failed' EXIT

# --- sysctls the node needs or the kubelet sets; k8s-down.sh restores them.
: >"$K8S_STATE/sysctls"
for s in net.ipv4.ip_forward vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops \
	kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.conf.all.route_localnet; do
	v=$(sysctl -n "$s" 2>/dev/null) && printf '%s=%s\n' "$s" "$v" >>"$K8S_STATE/sysctls"
done
sysctl -qw net.ipv4.ip_forward=1

# --- network: the node address on a veth, the external namespace behind it.
ip netns add "$K8S_EXT_NS"
ip link add "$K8S_NODE_IF" type veth peer name egk8s1 netns "$K8S_EXT_NS"
ip addr add "$K8S_NODE_IP/24" dev "$K8S_NODE_IF"
ip addr add "$K8S_EXT_GW/24" dev "$K8S_NODE_IF"
ip link set "$K8S_NODE_IF" up
ip -n "$K8S_EXT_NS" link set lo up
ip -n "$K8S_EXT_NS" addr add "$K8S_EXT_IP/24" dev egk8s1
ip -n "$K8S_EXT_NS" link set egk8s1 up
ip -n "$K8S_EXT_NS" route add default via "$K8S_EXT_GW"
# The node's resolver (pods with dnsPolicy Default, the egressd agent among
# them): a dnsmasq in the external namespace answering *.e2e.test with the
# external address, nothing else (no upstream servers).
printf 'nameserver %s\n' "$K8S_EXT_IP" >"$K8S_STATE/resolv.conf"
ip netns exec "$K8S_EXT_NS" dnsmasq --keep-in-foreground --no-resolv --no-hosts --bind-interfaces \
	--listen-address="$K8S_EXT_IP" --address="/e2e.test/$K8S_EXT_IP" --filter-AAAA --conf-file=/dev/null --pid-file="$K8S_STATE/dnsmasq.pid" --user=root \
	>"$K8S_STATE/logs/dnsmasq.log" 2>&1 &
echo $! >"$K8S_STATE/pids/dnsmasq"

# --- certificates: one CA; the API server's serving pair; one client pair
# in system:masters for the components and kubectl (a test cluster).
pki=$K8S_STATE/pki
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=egressd-k8s-ca \
	-keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
cert() { # name subject [san]
	openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$pki/$1.key" -out "$pki/$1.csr" 2>/dev/null
	local ext=$pki/$1.ext
	printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n' >"$ext"
	[ -z "${3:-}" ] || printf 'subjectAltName=%s\n' "$3" >>"$ext"
	openssl x509 -req -in "$pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
		-days 2 -extfile "$ext" -out "$pki/$1.crt" 2>/dev/null
}
cert apiserver /CN=kube-apiserver "IP:$K8S_API_SVC_IP,IP:$K8S_NODE_IP,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
cert admin "/O=system:masters/CN=egressd-k8s-admin"
openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
cat >"$KUBECONFIG" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: egressd-k8s
  cluster: {server: "https://$K8S_NODE_IP:6443", certificate-authority: "$pki/ca.crt"}
users:
- name: admin
  user: {client-certificate: "$pki/admin.crt", client-key: "$pki/admin.key"}
contexts:
- name: egressd-k8s
  context: {cluster: egressd-k8s, user: admin}
current-context: egressd-k8s
EOF

# --- the daemons, in a mount namespace of their own (see the top). The
# namespace lives as long as one of them does.
ns_start() { # name command...
	local name=$1
	shift
	EGK8S_CG=$K8S_DAEMON_CG setsid sh -c 'echo $$ >"$EGK8S_CG/cgroup.procs" && exec "$@"' sh nsenter --mount="/proc/$(cat "$K8S_STATE/pids/mntns")/ns/mnt" -- "$@" >"$K8S_STATE/logs/$name.log" 2>&1 </dev/null &
	echo $! >"$K8S_STATE/pids/$name"
}
wait_for() { # what seconds command...
	local what=$1 deadline=$((SECONDS + $2))
	shift 2
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $deadline ] || die "$what not up after $2 s"
		sleep 0.5
	done
}
# The namespace is held by a process that makes its mounts shared, mounts
# its bpffs and sleeps until k8s-down.sh; the daemons enter it by its PID.
# Every daemon, and so every containerd shim, runs in one cgroup v2 of our
# own, so that k8s-down.sh stops them all by cgroup.kill.
mkdir -p "$K8S_DAEMON_CG"
EGK8S_CG=$K8S_DAEMON_CG unshare --mount --propagation unchanged sh -c '
	echo $$ >"$EGK8S_CG/cgroup.procs" && mount --make-rshared / && mount -t bpf bpf /sys/fs/bpf && mount --make-shared /sys/fs/bpf &&
	echo ready && exec sleep infinity' >"$K8S_STATE/logs/mntns.log" 2>&1 </dev/null &
echo $! >"$K8S_STATE/pids/mntns"
wait_for "mount namespace" 10 grep -q ready "$K8S_STATE/logs/mntns.log"

ns_start etcd etcd --name egk8s --data-dir "$K8S_DATA/etcd" --unsafe-no-fsync \
	--listen-client-urls "http://127.0.0.1:$K8S_ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$K8S_ETCD_PORT" \
	--listen-peer-urls "http://127.0.0.1:$((K8S_ETCD_PORT + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((K8S_ETCD_PORT + 1))" \
	--initial-cluster "egk8s=http://127.0.0.1:$((K8S_ETCD_PORT + 1))"

ns_start kube-apiserver "$bin/kube-apiserver" --etcd-servers "http://127.0.0.1:$K8S_ETCD_PORT" \
	--advertise-address "$K8S_NODE_IP" --bind-address "$K8S_NODE_IP" --secure-port 6443 \
	--service-cluster-ip-range "$K8S_SVC_CIDR" --service-node-port-range 30000-30100 \
	--tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
	--client-ca-file "$pki/ca.crt" --kubelet-client-certificate "$pki/admin.crt" --kubelet-client-key "$pki/admin.key" \
	--service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
	--service-account-issuer https://kubernetes.default.svc --authorization-mode Node,RBAC \
	--kubelet-preferred-address-types InternalIP --enable-priority-and-fairness=false --profiling=false
kubectl() { "$bin/kubectl" --kubeconfig "$KUBECONFIG" "$@"; }
wait_for kube-apiserver 90 kubectl get --raw /readyz

ns_start kube-controller-manager "$bin/kube-controller-manager" --kubeconfig "$KUBECONFIG" \
	--bind-address 127.0.0.1 --secure-port 10357 --service-account-private-key-file "$pki/sa.key" \
	--root-ca-file "$pki/ca.crt" --use-service-account-credentials=false --controllers '*,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller' \
	--allocate-node-cidrs=false --leader-elect=false --profiling=false
ns_start kube-scheduler "$bin/kube-scheduler" --kubeconfig "$KUBECONFIG" \
	--bind-address 127.0.0.1 --secure-port 10359 --leader-elect=false --profiling=false

# --- containerd with its own root, state and socket.
cat >"$K8S_STATE/containerd.toml" <<EOF
version = 2
root = "$K8S_DATA/containerd"
state = "$K8S_STATE/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$K8S_CONTAINERD_SOCK"
[ttrpc]
  address = "$K8S_STATE/containerd-ttrpc.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$K8S_DATA/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$K8S_PAUSE_IMAGE"
  # No CAP_SYS_RESOURCE here: never lower a container's oom_score_adj.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$K8S_STATE/cni"
EOF
cat >"$K8S_STATE/cni/10-egk8s.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "egk8s", "plugins": [
  {"type": "bridge", "bridge": "$K8S_BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$K8S_DATA/cni-ipam",
            "ranges": [[{"subnet": "$K8S_POD_CIDR", "gateway": "$K8S_POD_GW"}]],
            "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}
]}
EOF
ns_start containerd containerd --config "$K8S_STATE/containerd.toml"
wait_for containerd 30 ctr --address "$K8S_CONTAINERD_SOCK" version

# --- images.
"$repo/scripts/k8s-images.sh" "$K8S_STATE/images" >&2
for tar in "$K8S_STATE/images"/*.tar; do
	ctr --address "$K8S_CONTAINERD_SOCK" -n k8s.io images import --no-unpack=false "$tar" >/dev/null ||
		die "ctr import $tar failed"
done

# --- kubelet (cgroupfs driver: the v1 controllers of the hybrid layout) and
# kube-proxy (iptables mode: the kubernetes service IP from pods).
cat >"$K8S_STATE/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $K8S_NODE_IP
port: 10250
healthzBindAddress: 127.0.0.1
healthzPort: 10248
readOnlyPort: 0
containerRuntimeEndpoint: unix://$K8S_CONTAINERD_SOCK
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
resolvConf: $K8S_STATE/resolv.conf
clusterDomain: cluster.local
syncFrequency: 5s
fileCheckFrequency: 5s
configMapAndSecretChangeDetectionStrategy: Watch
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: "$pki/ca.crt"}
authorization: {mode: AlwaysAllow}
EOF
ns_start kubelet "$bin/kubelet" --config "$K8S_STATE/kubelet.yaml" --kubeconfig "$KUBECONFIG" \
	--root-dir "$K8S_DATA/kubelet" --hostname-override "$K8S_NODE" --node-ip "$K8S_NODE_IP" \
	--cert-dir "$K8S_STATE/pki/kubelet"
ns_start kube-proxy "$bin/kube-proxy" --kubeconfig "$KUBECONFIG" --hostname-override "$K8S_NODE" \
	--proxy-mode iptables --cluster-cidr "$K8S_POD_CIDR" --bind-address "$K8S_NODE_IP" \
	--metrics-bind-address 127.0.0.1:10349 --healthz-bind-address 127.0.0.1:10356 \
	--conntrack-max-per-core 0 --conntrack-tcp-timeout-established 0 --conntrack-tcp-timeout-close-wait 0 \
	--profiling=false

wait_for "node $K8S_NODE Ready" 120 kubectl wait --for=condition=Ready "node/$K8S_NODE" --timeout=2s
# Pods are admitted only once their service account exists.
wait_for "default service account" 60 kubectl -n default get serviceaccount default
trap - EXIT
log "node $K8S_NODE Ready (Kubernetes $(basename "$bin")); KUBECONFIG=$KUBECONFIG"
echo "$KUBECONFIG"
