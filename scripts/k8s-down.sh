#!/usr/bin/env bash
# scripts/k8s-down.sh removes the single-node cluster of scripts/k8s-up.sh
# and every trace of it, also after a half-finished start: the pods and the
# daemons (by cgroup.kill of the pods' cgroups and of the daemons' cgroup,
# then the PIDs recorded), kube-proxy's and the kubelet's iptables chains,
# the cgroups, the pods' and the external network namespaces, the
# interfaces, the sysctls the
# run changed (restored to the values recorded before it), and the data
# and state directories. The mounts (the kubelet's volumes, the containers'
# root filesystems, the bpffs with egressd's pins) were only ever in the
# daemons' own mount namespace, which ends with its last process.
# Idempotent; run as root.
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH=/usr/local/bin:$PATH:/usr/sbin:/sbin
# shellcheck source=k8s-env.sh
. "$repo/scripts/k8s-env.sh"
log() { printf 'k8s-down: %s\n' "$*" >&2; }

cg2=$(findmnt -n -t cgroup2 -o TARGET | head -n1)
bin=${EGRESSD_K8S_CACHE:-/var/cache/egressd/k8s}/$(sed -n 's#^require k8s.io/kubernetes \(v[0-9.]*\)$#\1#p' "$repo/scripts/k8s/go.mod")

# kube-proxy removes its own rules (it needs no API server for that).
if [ -x "$bin/kube-proxy" ] && [ -e "$K8S_STATE/pids/kube-proxy" ]; then
	"$bin/kube-proxy" --cleanup >/dev/null 2>&1 || true
fi

# kill_cgroup DIR: every process in DIR and below, then the directories.
kill_cgroup() {
	local dir=$1 i
	[ -d "$dir" ] || return 0
	if [ -e "$dir/cgroup.kill" ]; then
		echo 1 >"$dir/cgroup.kill" 2>/dev/null
	else
		find "$dir" -name cgroup.procs -exec cat {} + 2>/dev/null | while read -r p; do kill -KILL "$p" 2>/dev/null; done
	fi
	for i in $(seq 50); do
		[ -z "$(find "$dir" -name cgroup.procs -exec cat {} + 2>/dev/null)" ] && break
		sleep 0.1
	done
	find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null
	[ ! -d "$dir" ] || log "could not remove cgroup $dir"
}

# The kubelet first, so that it restarts nothing while the rest goes.
for name in kubelet kube-proxy; do
	if [ -e "$K8S_STATE/pids/$name" ]; then kill -KILL "$(cat "$K8S_STATE/pids/$name")" 2>/dev/null; fi
done
# The pods (v2 tree of runc; the kubelet's v1 hierarchies on a hybrid host),
# then the daemons and containerd's shims.
if [ -n "$cg2" ]; then
	kill_cgroup "$cg2/kubepods"
	kill_cgroup "$cg2/kubepods.slice"
fi
for d in /sys/fs/cgroup/*/; do
	[ "${d%/}" = "$cg2" ] && continue
	[ -d "$d/kubepods" ] && kill_cgroup "$d/kubepods"
done
[ -n "$cg2" ] && kill_cgroup "$cg2/egressd-k8s"
for f in "$K8S_STATE"/pids/*; do
	[ -e "$f" ] || continue
	kill -KILL "$(cat "$f")" 2>/dev/null
	rm -f "$f"
done

# iptables chains the kubelet and kube-proxy made (KUBE-*), in every table.
for ipt in iptables ip6tables; do
	command -v "$ipt" >/dev/null || continue
	for table in filter nat mangle; do
		rules=$("$ipt" -t "$table" -S 2>/dev/null) || continue
		# Jumps into KUBE-* chains from the built-in ones, then the chains.
		grep -E '^-A [A-Z]+ .*-j KUBE-' <<<"$rules" | grep -Ev '^-A KUBE-' | sed 's/^-A/-D/' |
			while read -r r; do eval "$ipt -t $table $r" 2>/dev/null; done
		for c in $(sed -n 's/^-N \(KUBE-[A-Za-z0-9-]*\)$/\1/p' <<<"$rules"); do
			"$ipt" -t "$table" -F "$c" 2>/dev/null
		done
		for c in $(sed -n 's/^-N \(KUBE-[A-Za-z0-9-]*\)$/\1/p' <<<"$rules"); do
			"$ipt" -t "$table" -X "$c" 2>/dev/null
		done
	done
done

# The pods' network namespaces: the CNI plugin bind-mounts each under
# /run/netns/cni-<uuid>, and killing the pods does not unmount them. Ours
# are the ones whose veth is still a port of the cluster's bridge (a netns
# of anything else on the machine is left alone).
ip -o link show master "$K8S_BRIDGE" 2>/dev/null | grep -o 'link-netns cni-[0-9a-f-]*' | cut -d' ' -f2 | sort -u |
	while read -r ns; do
		ip netns del "$ns" 2>/dev/null || log "could not remove netns $ns"
	done
ip link del "$K8S_NODE_IF" 2>/dev/null
ip link del "$K8S_BRIDGE" 2>/dev/null
ip netns del "$K8S_EXT_NS" 2>/dev/null

if [ -e "$K8S_STATE/sysctls" ]; then
	while IFS= read -r kv; do sysctl -qw "$kv" 2>/dev/null || log "could not restore $kv"; done <"$K8S_STATE/sysctls"
fi
rm -rf "$K8S_DATA" "$K8S_STATE"
log "done"
