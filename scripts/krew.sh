#!/usr/bin/env bash
# scripts/krew.sh DIST VERSION: the kubectl plugin of a release (`kubectl vigil ...`), run by
# scripts/dist.sh once the binaries are in DIST:
#   kubectl-vigil-<version>-linux-<arch>.tar.gz   the binary named kubectl-vigil (reproducible
#                                                 archive: sorted, owner 0, mtime 0)
#   vigil.krew.yaml                               the krew plugin manifest, with each
#                                                 archive's release URL and sha256
# Then it proves the manifest: krew (sigs.k8s.io/krew, built into .tools/bin when missing)
# installs the plugin from the manifest and the amd64 archive into a scratch KREW_ROOT, and
# the installed `kubectl-vigil --version` names this version.
set -euo pipefail
cd "$(dirname "$0")/.."
DIST="${1:?DIST}"
VERSION="${2:?VERSION}"
KREW_VERSION=v0.4.3
RELEASES="$(sed -n 's/^repository = "\(.*\)"/\1/p' Cargo.toml | head -n 1)/releases/download/v$VERSION"
TOOLS="$PWD/.tools"

platforms=""
for arch in amd64 arm64; do
    archive="kubectl-vigil-$VERSION-linux-$arch.tar.gz"
    staging="$(mktemp -d)"
    cp "$DIST/vigil-$VERSION-linux-$arch" "$staging/kubectl-vigil"
    chmod 755 "$staging/kubectl-vigil"
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$staging" -cf - kubectl-vigil |
        gzip -n -9 >"$DIST/$archive"
    rm -rf "$staging"
    sum="$(sha256sum "$DIST/$archive" | cut -d' ' -f1)"
    platforms+="  - selector:
      matchLabels:
        os: linux
        arch: $arch
    uri: $RELEASES/$archive
    sha256: $sum
    bin: kubectl-vigil
    files:
      - from: kubectl-vigil
        to: .
"
done
cat >"$DIST/vigil.krew.yaml" <<MANIFEST
apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: vigil
spec:
  version: v$VERSION
  homepage: $(sed -n 's/^repository = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
  shortDescription: Day-2 operations for the Vigil operator
  description: |
    The fleet of Vigil objects at a glance, worst first (status), one object with its
    children, Events and last crash (status KIND/NAME), whether Vigil runs and you may use
    it (check), and requests the controller answers: renew certificates now, open or close
    a workload's circuit breaker, roll a workload's config back to a kept revision.
  platforms:
$platforms
MANIFEST

# `go install` leaves krew's version unknown to itself: a stamp file says which is there.
if [ "$(cat "$TOOLS/bin/krew.version" 2>/dev/null)" != "$KREW_VERSION" ] || [ ! -x "$TOOLS/bin/krew" ]; then
    GOBIN="$TOOLS/bin" go install "sigs.k8s.io/krew/cmd/krew@$KREW_VERSION"
    echo "$KREW_VERSION" >"$TOOLS/bin/krew.version"
fi
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
KREW_ROOT="$root" "$TOOLS/bin/krew" install --manifest="$DIST/vigil.krew.yaml" \
    --archive="$DIST/kubectl-vigil-$VERSION-linux-amd64.tar.gz" </dev/null >&2
installed="$("$root/bin/kubectl-vigil" --version)"
echo "krew installed: $installed"
case "$installed" in
    "vigil $VERSION"*) ;;
    *) echo "the plugin krew installed says $installed, not vigil $VERSION" >&2; exit 1 ;;
esac
