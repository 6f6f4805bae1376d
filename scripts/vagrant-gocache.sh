#!/usr/bin/env bash
# vagrant-gocache.sh fills a Go build cache on the host that the Vagrant
# guest can start from (the Vagrantfile's EGRESSD_GOCACHE): under software
# emulation (TCG) the guest compiles egressd's ~800 packages in more than an
# hour and each test binary in minutes; with the host's compiled packages in
# its cache it only links. Run as root:
#
#	sudo scripts/vagrant-gocache.sh            # prints the cache directory
#	EGRESSD_GOCACHE=$(sudo scripts/vagrant-gocache.sh) vagrant up
#
# Go's build cache is keyed by every input of a compilation, so an entry is
# used only where the guest would compile exactly the same thing; anything
# else the guest compiles itself. What the keys hold that differs between a
# host and the guest unless this script lines it up:
#   - the package's directory (builds without -trimpath): the tree is copied
#     to the guest's path, /egressd, as the Vagrantfile's rsync copies it, and
#     built there; the module cache is root's, /root/go/pkg/mod, in both;
#   - cgo: the guest has no C compiler, so its go builds with CGO_ENABLED=0;
#     so does this script;
#   - the Go version: the host's go must be go.mod's toolchain version, the
#     one scripts/provision.sh installs in the guest.
# Test results are never taken from a cache: scripts/test.sh runs go test
# with -count=1, and this script runs no test (-run '^$' only builds them).
#
# Environment:
#	EGRESSD_GOCACHE_DIR   the cache (default /var/cache/egressd/vagrant/go-build);
#	                      emptied first, so it holds only what the guest can use
#	EGRESSD_GUEST_TREE    the guest's path of the tree (default /egressd); the
#	                      copy there is made by this script and removed after
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH=/usr/local/bin:$PATH:/usr/local/go/bin

CACHE=${EGRESSD_GOCACHE_DIR:-/var/cache/egressd/vagrant/go-build}
TREE=${EGRESSD_GUEST_TREE:-/egressd}

log() { printf 'vagrant-gocache: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
	log "run me as root (the guest builds as root: /root/go/pkg/mod)"
	exit 1
fi
want=$(awk '$1 == "go" { print $2; exit }' go.mod)
have=$(GOTOOLCHAIN=local go env GOVERSION)
if [ "$have" != "go$want" ]; then
	log "host go is $have; the guest's is go$want (go.mod): its cache would not match"
	exit 1
fi
if [ -e "$TREE" ] && [ ! -e "$TREE/.egressd-gocache-copy" ]; then
	log "$TREE exists and is not this script's copy; move it away or set EGRESSD_GUEST_TREE"
	exit 1
fi

cleanup() { rm -rf "$TREE"; }
trap cleanup EXIT
mkdir -p "$TREE"
touch "$TREE/.egressd-gocache-copy"
# What the Vagrantfile's rsync leaves out (bin/, *.test) is left out here too.
rsync -a --delete --exclude bin/ --exclude '*.test' --exclude .egressd-gocache-copy ./ "$TREE/"

rm -rf "$CACHE"
mkdir -p "$CACHE"
log "building in $TREE into $CACHE (CGO_ENABLED=0, $have)"
(
	cd "$TREE"
	export GOCACHE=$CACHE CGO_ENABLED=0 GOFLAGS=
	go build -o /dev/null ./cmd/egressd
	go test -count=1 -run '^$' ./... >/dev/null
)
log "$(du -sh "$CACHE" | cut -f1) in $CACHE"
echo "$CACHE"
