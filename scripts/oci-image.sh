#!/usr/bin/env bash
# scripts/oci-image.sh writes a one-layer OCI image archive from a root
# directory, with no registry, no docker and no base image:
#
#	scripts/oci-image.sh NAME:TAG ROOTDIR OUT.tar ENTRYPOINT [CMD]...
#
# ENTRYPOINT is the image's entrypoint, CMD its default arguments (a
# Dockerfile's ENTRYPOINT ["ENTRYPOINT"] and CMD [CMD...]).
# The archive is an OCI image layout (oci-layout, index.json, blobs/) as
# `ctr images import` and `docker load` read it; the index names the image
# NAME:TAG (io.containerd.image.name). The layer is uncompressed and
# reproducible: files sorted, owned by root, mtime 0, so the same ROOTDIR
# gives the same image digest on every machine.
set -euo pipefail
[ $# -ge 4 ] || { echo "usage: $0 NAME:TAG ROOTDIR OUT.tar ENTRYPOINT [CMD]..." >&2; exit 2; }
ref=$1 root=$2 out=$3
entrypoint=$4
shift 4
[ -d "$root" ] || { echo "oci-image: $root is not a directory" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
blobs=$tmp/blobs/sha256
mkdir -p "$blobs"

tarball() { tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --format=posix \
	--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime -C "$1" -cf - .; }

# blob FILE: moves FILE into blobs/ under its digest, prints "digest size".
blob() {
	local d s
	d=$(sha256sum "$1" | cut -d' ' -f1)
	s=$(stat -c %s "$1")
	mv "$1" "$blobs/$d"
	echo "sha256:$d $s"
}

json_strings() {
	local first=1 a
	printf '['
	for a in "$@"; do
		[ -n "$first" ] || printf ','
		first=
		a=${a//\\/\\\\}
		printf '"%s"' "${a//\"/\\\"}"
	done
	printf ']'
}

tarball "$root" >"$tmp/layer"
read -r layer_digest layer_size < <(blob "$tmp/layer")

arch=$(go env GOARCH 2>/dev/null || echo amd64)
printf '{"architecture":"%s","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Entrypoint":%s,"Cmd":%s},"rootfs":{"type":"layers","diff_ids":["%s"]},"history":[{"created":"1970-01-01T00:00:00Z","created_by":"scripts/oci-image.sh"}]}' \
	"$arch" "$(json_strings "$entrypoint")" "$(json_strings "$@")" "$layer_digest" >"$tmp/config"
read -r config_digest config_size < <(blob "$tmp/config")

printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%s}]}' \
	"$config_digest" "$config_size" "$layer_digest" "$layer_size" >"$tmp/manifest"
read -r manifest_digest manifest_size < <(blob "$tmp/manifest")

printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
	"$manifest_digest" "$manifest_size" "$ref" "${ref##*:}" >"$tmp/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$tmp/oci-layout"

mkdir -p "$(dirname "$out")"
tarball "$tmp" >"$out.tmp"
mv "$out.tmp" "$out"
echo "$ref $manifest_digest $out"
