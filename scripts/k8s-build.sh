#!/usr/bin/env bash
# scripts/k8s-build.sh builds the Kubernetes commands the single-node cluster
# (scripts/k8s-up.sh) runs — kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet, kube-proxy and kubectl — from the Go module proxy,
# at the version pinned in scripts/k8s/go.mod, into a cache outside the
# repository keyed by that version:
#
#	${EGRESSD_K8S_CACHE:-/var/cache/egressd/k8s}/<version>/
#
# Only the first run builds (7-15 min on 2 cores, ~2 GB peak memory, mostly
# kube-apiserver); later runs find the binaries and return at once. It prints
# the directory. k8s.io/kubernetes cannot be `go install`ed (its go.mod has
# replace directives), hence the wrapper module in scripts/k8s/.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export PATH=$PATH:/usr/local/go/bin

version=$(sed -n 's#^require k8s.io/kubernetes \(v[0-9.]*\)$#\1#p' "$here/k8s/go.mod")
[ -n "$version" ] || { echo "k8s-build: no 'require k8s.io/kubernetes vX.Y.Z' line in $here/k8s/go.mod" >&2; exit 1; }
dir=${EGRESSD_K8S_CACHE:-/var/cache/egressd/k8s}/$version
cmds=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

have() {
	local c
	for c in "${cmds[@]}"; do [ -x "$dir/$c" ] || return 1; done
}
if have; then
	echo "$dir"
	exit 0
fi

# One build at a time per cache (two CI runs, or a run and a developer).
mkdir -p "$dir"
exec 8>"$dir/.lock"
flock 8
if have; then
	echo "$dir"
	exit 0
fi

IFS=. read -r major minor _ <<<"${version#v}"
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
targets=()
for c in "${cmds[@]}"; do
	case $c in
	kubectl) targets+=(k8s.io/kubernetes/cmd/kubectl) ;;
	*) targets+=("k8s.io/kubernetes/cmd/$c") ;;
	esac
done
echo "k8s-build: building Kubernetes $version into $dir (first run only; 7-15 min on 2 cores)" >&2
start=$SECONDS
tmp=$(mktemp -d "$dir/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# nice: the build shares the machine with whatever else runs; -p 2 bounds the
# parallel compiles (and so the memory) on small machines.
(cd "$here/k8s" && CGO_ENABLED=0 GOFLAGS=-mod=mod nice -n 19 \
	go build -p "${EGRESSD_K8S_BUILD_P:-2}" -trimpath -tags providerless -ldflags "$ldflags" -o "$tmp/" "${targets[@]}")
for c in "${cmds[@]}"; do mv "$tmp/$c" "$dir/$c"; done
echo "k8s-build: built in $((SECONDS - start))s" >&2
echo "$dir"
