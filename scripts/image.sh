#!/usr/bin/env bash
# scripts/image.sh builds the egressd container image — the release recipe:
# the static binary (CGO_ENABLED=0; the BPF objects are committed, so no
# clang) and a CA bundle for TLS origination, FROM scratch, nothing else (no
# shell). No registry is needed:
#
#	scripts/image.sh                 # OCI archive: _out/egressd-image.tar
#	scripts/image.sh --context DIR   # only the build context, for
#	                                 #   docker build -f deploy/Dockerfile DIR
#
# The image is named by the DaemonSet's tag (deploy/daemonset.yaml), so an
# archive imported on a node (ctr -n k8s.io images import) is used as is
# (imagePullPolicy: IfNotPresent). The cluster tests run this same archive.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH=/usr/local/bin:$PATH:/usr/local/go/bin

image=$(sed -n 's/^ *image: *\(.*egressd:[^ ]*\) *$/\1/p' "$repo/deploy/daemonset.yaml" | head -n1)
[ -n "$image" ] || { echo "image.sh: no egressd image: line in deploy/daemonset.yaml" >&2; exit 1; }
ca=${EGRESSD_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
[ -r "$ca" ] || { echo "image.sh: no CA bundle at $ca (apt-get install ca-certificates)" >&2; exit 1; }

context=""
out=$repo/_out/egressd-image.tar
case ${1:-} in
--context) context=${2:?--context DIR}; rm -rf "$context" ;;
"") ;;
*) out=$1 ;;
esac
root=${context:-$(mktemp -d)}
mkdir -p "$root"
chmod 0755 "$root"
[ -n "$context" ] || trap 'rm -rf "$root"' EXIT

mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs"
(cd "$repo" && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "$root/usr/local/bin/egressd" ./cmd/egressd)
cp "$ca" "$root/etc/ssl/certs/ca-certificates.crt"
chmod 0755 "$root/usr/local/bin/egressd"
chmod 0644 "$root/etc/ssl/certs/ca-certificates.crt"
if [ -n "$context" ]; then
	echo "$context"
	exit 0
fi
"$repo/scripts/oci-image.sh" "$image" "$root" "$out" /usr/local/bin/egressd run
