#!/usr/bin/env bash
# Packs a static `vigil` into the operator image, an OCI archive (the image of Containerfile,
# built without a container engine by scripts/oci-image.py): `make image` for amd64, and
# `make dist` for every architecture of a release.
#
#   scripts/image.sh ARCH BINARY OUT
#
# Prints the archive, the image name, its digest and its size.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 3 ] || { echo "usage: $0 ARCH BINARY OUT" >&2; exit 2; }
ARCH="$1" BINARY="$2" OUT="$3"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
REVISION="${VIGIL_GIT_REVISION:-$(git rev-parse HEAD)}"
REPOSITORY="${IMAGE_REPOSITORY:-ghcr.io/vigil-operator/vigil}"
mkdir -p "$(dirname "$OUT")"
scripts/oci-image.py --name "$REPOSITORY:$VERSION" --out "$OUT" --arch "$ARCH" \
    --file "/vigil=$BINARY:0755" --entrypoint /vigil --cmd run --user 65532:65532 \
    --label org.opencontainers.image.source=https://github.com/vigil-operator/vigil \
    --label "org.opencontainers.image.version=$VERSION" \
    --label "org.opencontainers.image.revision=$REVISION" \
    --label org.opencontainers.image.licenses=Apache-2.0 \
    --label org.opencontainers.image.title=vigil >"$OUT.digest"
echo "$OUT: $REPOSITORY:$VERSION ($ARCH) $(cat "$OUT.digest"), $(du -k "$OUT" | cut -f1) KiB"
