# scripts/k8s-env.sh: the single-node cluster's names and addresses, sourced
# by k8s-up.sh, k8s-down.sh and k8s-demo.sh; the cluster tests (e2e/k8s) read
# the same values from this file. All addresses are in 198.18.128.0/18 (the
# benchmarking range; this cluster's share of it).
K8S_STATE=${EGRESSD_K8S_STATE:-/run/egressd-k8s}   # pids, logs, certs, configs
K8S_DATA=${EGRESSD_K8S_DATA:-/var/lib/egressd-k8s} # etcd, containerd, kubelet
K8S_NODE=egk8s-node
K8S_NODE_IF=egk8s0
K8S_NODE_IP=198.18.160.1
K8S_POD_CIDR=198.18.128.0/20
K8S_POD_GW=198.18.128.1
K8S_BRIDGE=egk8sbr0
K8S_SVC_CIDR=198.18.144.0/20
K8S_API_SVC_IP=198.18.144.1
K8S_EXT_NS=egk8s-ext
K8S_EXT_GW=198.18.161.1
K8S_EXT_IP=198.18.161.2
K8S_ETCD_PORT=23917
K8S_CONTAINERD_SOCK=$K8S_STATE/containerd.sock
K8S_PAUSE_IMAGE=egressd.invalid/pause:1
K8S_CLIENT_IMAGE=egressd.invalid/client:1
KUBECONFIG=$K8S_STATE/admin.kubeconfig
export KUBECONFIG
