#!/usr/bin/env bash
# scripts/k8s-images.sh OUTDIR writes the three images the single-node
# cluster runs, as OCI archives for `ctr -n k8s.io images import`, built
# here without a registry:
#   egressd.tar  scripts/image.sh: the release image, tagged as the DaemonSet names it
#   pause.tar    the pod sandbox (scripts/pause)
#   client.tar   static busybox (sh, httpd, sleep...) and scripts/fetch (an
#                HTTP client): the test pods
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH=/usr/local/bin:$PATH:/usr/local/go/bin
# shellcheck source=k8s-env.sh
. "$repo/scripts/k8s-env.sh"
out=${1:?usage: $0 OUTDIR}
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$repo/scripts/image.sh" "$out/egressd.tar"

mkdir -m 0755 "$tmp/pause"
(cd "$repo" && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "$tmp/pause/pause" ./scripts/pause)
"$repo/scripts/oci-image.sh" "$K8S_PAUSE_IMAGE" "$tmp/pause" "$out/pause.tar" /pause

busybox=/bin/busybox # busybox-static's: no shared libraries needed in the image
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed' ||
	{ echo "k8s-images: no static busybox (busybox-static): run scripts/provision.sh" >&2; exit 1; }
mkdir -m 0755 -p "$tmp/client/bin" "$tmp/client/tmp" "$tmp/client/www"
chmod 1777 "$tmp/client/tmp"
cp "$busybox" "$tmp/client/bin/busybox"
for a in sh nc httpd sleep cat echo date ls ps kill true false seq touch rm mkdir sed head; do
	ln -s busybox "$tmp/client/bin/$a"
done
(cd "$repo" && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "$tmp/client/bin/fetch" ./scripts/fetch)
"$repo/scripts/oci-image.sh" "$K8S_CLIENT_IMAGE" "$tmp/client" "$out/client.tar" /bin/sh
