#!/usr/bin/env bash
# provision.sh installs what egressd needs to build, test and demo on a
# Debian or Ubuntu machine. It is shared by .ci/run, scripts/demo.sh,
# scripts/test.sh and the Vagrantfile, so the three never drift apart.
#
# Run as root. Idempotent: packages already installed are not touched, and
# `apt-get update` runs at most once, only when something is missing.
#
# Go: if `go` is missing or older than go.mod's `go` line, the matching
# toolchain is fetched from the Go module proxy ($GOPROXY, default
# proxy.golang.org) as the module golang.org/toolchain — the same archive the
# go command itself downloads when it switches toolchains — and its h1: hash
# is checked against the checksum database as served through that proxy
# (/sumdb/sum.golang.org/lookup). It is unpacked to $GO_PREFIX/go<version>
# and linked into $GO_PREFIX/bin (GO_PREFIX defaults to /usr/local). Debian's
# own golang (1.19 in bookworm) is too old to build egressd, which is why it
# is not used.
set -euo pipefail

# The Debian packages, one per line. Add a package here (and nowhere else)
# when a script or test starts to need it.
PACKAGES=(
	clang
	llvm
	libbpf-dev
	bpftool
	linux-libc-dev
	curl
	nghttp2-client
	squid
	nginx-light
	haproxy
	dnsmasq-base
	wrk
	iproute2
	openssl
	ca-certificates
	unzip
	git
	# The single-node Kubernetes cluster (scripts/k8s-up.sh): the runtime,
	# etcd and the CNI plugins; kube-proxy's iptables; the client image.
	containerd
	runc
	etcd-server
	containernetworking-plugins
	iptables
	busybox-static
)

# What only a CI host needs on top: `vagrant validate`, and the kernel
# matrix (scripts/kernel-matrix.sh: QEMU; busybox-static, above, for its
# initramfs; kmod's depmod/modprobe to resolve the guest kernels' modules,
# cpio and the decompressors for those modules). Not installed inside the
# Vagrant VM, which sets EGRESSD_PROVISION_VM=1.
HOST_PACKAGES=(
	vagrant
	qemu-system-x86
	kmod
	cpio
	xz-utils
	zstd
)
if [ "${EGRESSD_PROVISION_VM:-}" != 1 ]; then
	PACKAGES+=("${HOST_PACKAGES[@]}")
fi

# Services some of those packages ship. Tests and benchmarks start their own
# instances with their own configs; the system-wide ones would only hold
# ports, so apt is kept from starting them and they are not enabled at boot
# (only for packages this script installs).
DAEMONS=(nginx squid haproxy containerd etcd)

log() { printf 'provision: %s\n' "$*" >&2; }

repo_root() { cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd; }

install_packages() {
	local missing=() p
	for p in "${PACKAGES[@]}"; do
		if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
			missing+=("$p")
		fi
	done
	if [ "${#missing[@]}" -eq 0 ]; then
		log "all ${#PACKAGES[@]} packages present"
		return
	fi
	log "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	# A package the distribution does not carry (bpftool and vagrant are not in
	# every Ubuntu release) is reported and skipped instead of failing the lot.
	local available=()
	for p in "${missing[@]}"; do
		if apt-cache show "$p" >/dev/null 2>&1; then
			available+=("$p")
		else
			log "WARNING: package $p is not available here; skipping it"
		fi
	done
	if [ "${#available[@]}" -gt 0 ]; then
		install_quietly "${available[@]}"
	fi
}

# install_quietly installs packages without starting their services
# (policy-rc.d, honoured by invoke-rc.d and deb-systemd-invoke), then
# disables at boot those of DAEMONS it installed.
install_quietly() {
	local policy=/usr/sbin/policy-rc.d own_policy=""
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod +x "$policy"
		own_policy=1
	fi
	local rc=0 dpkg_opts=()
	if [ "${EGRESSD_PROVISION_VM:-}" = 1 ]; then
		vm_triggers_off
		# Nor an fsync per unpacked file: the VM is disposable (a crash
		# while provisioning means `vagrant destroy`, not a repair).
		dpkg_opts=(-o Dpkg::Options::=--force-unsafe-io)
	fi
	apt-get install -y -q --no-install-recommends "${dpkg_opts[@]}" "$@" || rc=$?
	if [ "${EGRESSD_PROVISION_VM:-}" = 1 ]; then vm_triggers_on; fi
	if [ -n "$own_policy" ]; then rm -f "$policy"; fi
	[ "$rc" -eq 0 ] || return "$rc"
	if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
		local d
		for d in "${DAEMONS[@]}"; do
			if printf '%s\n' "$@" | grep -q "^$d"; then
				systemctl disable --now "$d" >/dev/null 2>&1 || true
			fi
		done
	fi
}

# In the Vagrant VM only (EGRESSD_PROVISION_VM=1), while apt-get installs,
# two package triggers that rebuild something the VM does not use are kept
# from running: update-initramfs (busybox-static ships an initramfs hook, so
# installing it regenerates the running kernel's initramfs — more than 25
# minutes under TCG, docs/vagrant.md) and man-db's index (the published box
# has man-db). The packages here are userland tools run from the root
# filesystem, none is needed in the initramfs: the kernel boots with the
# initramfs it came with. Both switches are the packages' own
# (update_initramfs=no in update-initramfs.conf, man-db's auto-update flag
# file) and are put back by vm_triggers_on, also if provision.sh dies in
# between (the trap). CI hosts are not touched.
INITRAMFS_CONF=/etc/initramfs-tools/update-initramfs.conf
MANDB_FLAG=/var/lib/man-db/auto-update
vm_triggers_off() {
	trap vm_triggers_on EXIT
	if [ -f "$INITRAMFS_CONF" ] && [ ! -e "$INITRAMFS_CONF.egressd" ]; then
		cp -p "$INITRAMFS_CONF" "$INITRAMFS_CONF.egressd"
		sed -i 's/^update_initramfs=.*/update_initramfs=no/' "$INITRAMFS_CONF"
	fi
	if [ -e "$MANDB_FLAG" ]; then mv "$MANDB_FLAG" "$MANDB_FLAG.egressd"; fi
}
vm_triggers_on() {
	if [ -e "$INITRAMFS_CONF.egressd" ]; then mv -f "$INITRAMFS_CONF.egressd" "$INITRAMFS_CONF"; fi
	if [ -e "$MANDB_FLAG.egressd" ]; then mv -f "$MANDB_FLAG.egressd" "$MANDB_FLAG"; fi
	trap - EXIT
}

# version_ge A B: is Go version A (e.g. 1.26.8) >= B?
version_ge() {
	[ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1)" = "$2" ]
}

go_wanted() {
	awk '$1 == "go" { print $2; exit }' "$(repo_root)/go.mod"
}

# h1_hash DIR prints Go's dirhash "h1:" of the files below DIR, named by their
# path relative to DIR (golang.org/x/mod/sumdb/dirhash.Hash1): the SHA-256 of
# the lines "<sha256 hex>  <name>", sorted by name — sha256sum's own output
# format. One sha256sum for all the files (xargs), not one process per file:
# the toolchain has ~11,500 files, and a process each took more than 15
# minutes in an emulated VM. (sha256sum escapes names holding a backslash or
# a newline; module zips allow neither.)
h1_hash() {
	local dir=$1
	(
		cd "$dir"
		find . -type f | sed 's|^\./||' | LC_ALL=C sort | tr '\n' '\0' | xargs -0 -r sha256sum --
	) | openssl dgst -sha256 -binary | base64 | sed 's/^/h1:/'
}

install_go() {
	local want=$1 arch
	case "$(uname -m)" in
	x86_64) arch=amd64 ;;
	aarch64) arch=arm64 ;;
	*) log "no Go toolchain for $(uname -m); install Go >= $want by hand"; exit 1 ;;
	esac
	local proxy=${GOPROXY:-https://proxy.golang.org}
	proxy=${proxy%%,*}
	proxy=${proxy%%|*}
	if [ "$proxy" = direct ] || [ "$proxy" = off ]; then proxy=https://proxy.golang.org; fi
	local mod=golang.org/toolchain ver=v0.0.1-go$want.linux-$arch
	local tmp
	tmp=$(mktemp -d)
	GO_TMP=$tmp
	trap 'rm -rf "${GO_TMP:-}"' EXIT
	log "fetching Go $want from $proxy"
	curl -fsSL -o "$tmp/go.zip" "$proxy/$mod/@v/$ver.zip"
	local want_hash got_hash
	want_hash=$(curl -fsSL "$proxy/sumdb/sum.golang.org/lookup/$mod@$ver" |
		awk -v m="$mod" -v v="$ver" '$1 == m && $2 == v { print $3; exit }')
	unzip -q "$tmp/go.zip" -d "$tmp/x"
	got_hash=$(h1_hash "$tmp/x")
	if [ -z "$want_hash" ] || [ "$want_hash" != "$got_hash" ]; then
		log "checksum mismatch for $mod@$ver: sumdb says '${want_hash}', archive is '$got_hash'"
		exit 1
	fi
	local prefix=${GO_PREFIX:-/usr/local}
	local dest=$prefix/go$want
	mkdir -p "$prefix/bin"
	rm -rf "$dest"
	mv "$tmp/x/$mod@$ver" "$dest"
	# Module zips do not keep the executable bits.
	chmod +x "$dest"/bin/* "$dest"/pkg/tool/*/*
	ln -sf "$dest/bin/go" "$prefix/bin/go"
	ln -sf "$dest/bin/gofmt" "$prefix/bin/gofmt"
	log "installed Go $want in $dest (linked from $prefix/bin)"
}

ensure_go() {
	local want have=""
	want=$(go_wanted)
	# Where install_go links go: a Go installed by an earlier run wins over an
	# older one (Debian's /usr/bin/go).
	PATH=${GO_PREFIX:-/usr/local}/bin:$PATH
	if command -v go >/dev/null 2>&1; then
		have=$(GOTOOLCHAIN=local go env GOVERSION 2>/dev/null || go version | awk '{print $3}')
		have=${have#go}
	fi
	if [ -n "$have" ] && version_ge "$have" "$want"; then
		log "go $have present (need >= $want)"
		return
	fi
	log "go ${have:-missing}, need >= $want"
	install_go "$want"
}

# staticcheck, at a pinned version (CI runs it next to go vet), built from the
# Go module proxy into $GO_PREFIX/bin; an installed binary of that version is
# kept.
STATICCHECK_VERSION=v0.8.2 # honnef.co/go/tools 0.8.2 = staticcheck 2026.2.2

ensure_staticcheck() {
	local bin=${GO_PREFIX:-/usr/local}/bin/staticcheck
	if [ -x "$bin" ] && "$bin" -version 2>/dev/null | grep -qF "(${STATICCHECK_VERSION#v})"; then
		log "staticcheck $STATICCHECK_VERSION present"
		return
	fi
	log "installing staticcheck $STATICCHECK_VERSION"
	GOBIN=${GO_PREFIX:-/usr/local}/bin GOTOOLCHAIN=local \
		go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
}

main() {
	if [ "$(id -u)" -ne 0 ]; then
		log "run me as root (apt-get, /usr/local)"
		exit 1
	fi
	install_packages
	ensure_go
	# staticcheck is CI's linter (.ci/run), not part of the test suite: the
	# VM leaves it out, like the host packages (building it there, emulated,
	# would take many minutes).
	if [ "${EGRESSD_PROVISION_VM:-}" != 1 ]; then
		ensure_staticcheck
	fi
}

main "$@"
