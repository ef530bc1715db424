#!/usr/bin/env bash
# make dist: the release artifacts in dist/, each listed in dist/SHA256SUMS:
#   vigil-<version>-linux-amd64, vigil-<version>-linux-arm64   static binaries (musl)
#   vigil-<version>-amd64.tar, vigil-<version>-arm64.tar       the operator images (OCI archives)
#   vigil-<version>.tgz                                        the chart (helm package)
#   vigil-crds-<version>.yaml                                  every CRD, for kubectl apply
#   vigil-<version>-linux-<arch>.spdx.json                     the SBOM of each binary (SPDX 2.3)
#   kubectl-vigil-<version>-linux-<arch>.tar.gz, vigil.krew.yaml the kubectl plugin and its
#                                                              krew manifest (scripts/krew.sh)
#
# The amd64 binary is the one `make image` built (the Makefile runs it first); arm64 is
# cross-compiled with cargo-zigbuild, whose C compiler and linker is zig (PyPI's `ziglang`).
# Both are installed here when missing, into .tools/ and cargo's bin folder.
# Needs VIGIL_GIT_REVISION and RELEASE_RUSTFLAGS from the Makefile.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${VIGIL_GIT_REVISION:?set by make dist}" "${RELEASE_RUSTFLAGS:?set by make dist}"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
TOOLS="$PWD/.tools"
DIST="$PWD/dist"
AMD64=x86_64-unknown-linux-musl
ARM64=aarch64-unknown-linux-musl
ZIG_VERSION=0.15.2        # PyPI's ziglang
ZIGBUILD_VERSION=0.24.1   # crates.io's cargo-zigbuild
step() { printf '\n== %s\n' "$*" >&2; }

step "zig $ZIG_VERSION (PyPI ziglang) and cargo-zigbuild $ZIGBUILD_VERSION"
if [ "$("$TOOLS/zig/bin/python" -m ziglang version 2>/dev/null)" != "$ZIG_VERSION" ]; then
    rm -rf "$TOOLS/zig"
    python3 -m venv "$TOOLS/zig"
    "$TOOLS/zig/bin/pip" install --quiet "ziglang==$ZIG_VERSION"
fi
mkdir -p "$TOOLS/bin"
printf '#!/bin/sh\nexec "%s" -m ziglang "$@"\n' "$TOOLS/zig/bin/python" >"$TOOLS/bin/zig"
chmod 755 "$TOOLS/bin/zig"
if ! cargo-zigbuild --version 2>/dev/null | grep -qw "$ZIGBUILD_VERSION"; then
    cargo install --locked cargo-zigbuild --version "$ZIGBUILD_VERSION"
fi
rustup target list --installed | grep -qx "$ARM64" || rustup target add "$ARM64"

step "vigil for linux/arm64 ($ARM64, cross-compiled)"
PATH="$TOOLS/bin:$PATH" VIGIL_GIT_REVISION="$VIGIL_GIT_REVISION" \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="$RELEASE_RUSTFLAGS" \
    cargo zigbuild --locked --release --target "$ARM64" --bin vigil

rm -rf "$DIST"
mkdir -p "$DIST"
for arch in amd64 arm64; do
    if [ "$arch" = amd64 ]; then target=$AMD64 machine="x86-64"; else target=$ARM64 machine="ARM aarch64"; fi
    binary="$DIST/vigil-$VERSION-linux-$arch"
    cp "target/$target/release/vigil" "$binary"
    step "$(basename "$binary")"
    # Static: no program interpreter, no shared library, for the architecture named.
    description="$(file -b "$binary")"
    echo "$description"
    case "$description" in
        *"$machine"*"statically linked"* | *"$machine"*"static-pie linked"*) ;;
        *) echo "$binary is not a static $machine executable" >&2; exit 1 ;;
    esac
    if readelf -lW "$binary" | grep -q 'Requesting program interpreter' ||
        readelf -dW "$binary" | grep -q '(NEEDED)'; then
        echo "$binary needs a dynamic loader or a shared library" >&2
        exit 1
    fi
    VIGIL_GIT_REVISION="$VIGIL_GIT_REVISION" scripts/image.sh "$arch" "$binary" "$DIST/vigil-$VERSION-$arch.tar"
    rm -f "$DIST/vigil-$VERSION-$arch.tar.digest"
    scripts/sbom.py --target "$target" --out "$DIST/vigil-$VERSION-linux-$arch.spdx.json"
done
# The amd64 binary runs here: it names its version and revision.
"$DIST/vigil-$VERSION-linux-amd64" --version

step "the chart and the CRD bundle"
"$TOOLS/bin/helm" package charts/vigil --destination "$DIST"
{
    first=1
    for crd in crds/*.yaml; do
        [ "$first" = 1 ] || echo "---"
        first=0
        cat "$crd"
    done
} >"$DIST/vigil-crds-$VERSION.yaml"

step "the kubectl plugin: archives and krew manifest (scripts/krew.sh)"
scripts/krew.sh "$DIST" "$VERSION"

step "SHA256SUMS"
(cd "$DIST" && find . -maxdepth 1 -type f ! -name SHA256SUMS -printf '%f\n' | LC_ALL=C sort |
    xargs sha256sum >SHA256SUMS)
cat "$DIST/SHA256SUMS"
du -h "$DIST"/* | sed 's#'"$DIST"'/##'
