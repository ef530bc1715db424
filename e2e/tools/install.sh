#!/usr/bin/env bash
# Builds the real Kubernetes control-plane peers, Pebble (ACME test server),
# CoreDNS and the OpenTelemetry Collectors that the end-to-end tests need into <repo>/.tools/bin/, and installs the
# Debian packages the tests use.
#
#   e2e/tools/install.sh            build what is missing or stale
#   FORCE=1 e2e/tools/install.sh    rebuild every Go binary
#   TOOLS_BIN=/some/dir ...         build somewhere else (default <repo>/.tools/bin)
#   SKIP_APT=1 ...                  do not touch Debian packages
#   PEERS=1 ...                     also build the benchmark peers (make bench-peers)
#
# Prerequisites: Go >= 1.26 and apt (run as root, or with sudo available).
# Versions are pinned in these modules (each with a complete go.sum):
#   e2e/tools/go.mod         kube-apiserver, kube-controller-manager,
#                            kube-scheduler, kubectl (k8s.io/kubernetes), kwok
#   e2e/tools/helm/go.mod    helm
#   e2e/tools/etcd/go.mod    etcd
#   e2e/tools/pebble/go.mod  pebble (ACME test server)
#   e2e/tools/coredns/go.mod coredns (CrossCloudDNS tests)
#   e2e/tools/registry/go.mod registry (CNCF Distribution: the OCI registry the
#                            chart is pushed to and installed from)
#   e2e/tools/thanos/go.mod  thanos (Thanos Ruler evaluating Vigil's rules)
#   e2e/tools/jaeger/go.mod  jaeger (Jaeger v2: traces from the VMware gateway)
#   e2e/tools/sloth/go.mod   sloth (only with PEERS=1: the SLO generator Vigil is
#                            measured against in scripts/bench-peers.sh)
#   e2e/tools/otelcol/go.mod ocb, the Collector Builder; the Collectors it
#                            generates are pinned in otelcol/{vigil,backend}/
# Every binary has a stamp file .tools/bin/.<name>.version whose first word is
# the pinned version it was built from, followed by the Go version and a hash
# of its module's go.mod+go.sum. A binary is rebuilt when it is missing or its
# stamp differs (with a warm Go build cache a rebuild only relinks).
# See e2e/tools/README.md for how to run the built processes together.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
BIN="${TOOLS_BIN:-$REPO/.tools/bin}"
FORCE="${FORCE:-0}"

log() { printf '%s\n' "$*" >&2; }
die() { log "install.sh: error: $*"; exit 1; }

# ---------------------------------------------------------------- Debian ----
# bind9 + bind9-dnsutils: DNS server, dig, nsupdate; prometheus: promtool.
# etcd is built from etcd/go.mod instead of Debian's etcd-server 3.4.23: that
# one starts and serves kube-apiserver 1.36, but is below Kubernetes' supported
# minimum (3.4.29 / 3.5.11), lacks RequestWatchProgress and made pods reach
# Running ~20x slower (README.md). pebble is built from pebble/go.mod instead
# of Debian's pebble 2.4.0, which has no ACME Renewal Information (RFC 9773).
# The real node: runc (Debian's crun refuses this machine's hybrid cgroups), the CNI
# bridge/host-local/portmap plugins (in /usr/lib/cni), nftables for the DNAT of pod traffic
# to loopback services. musl-tools: musl-gcc, for the static operator binary of the image
# (ring compiles C) and the pause program. python3.11-minimal and openjdk-17-jdk-headless
# (javac, jlink): the Python and Java crash programs of the real node and their runtimes.
# prometheus-alertmanager (0.25): routes the SLO alerts of a real Prometheus to the
# receivers of docs/alerting/alertmanager.yml (matchers, inhibit_rules with equal: all there).
APT_PACKAGES=(bind9 bind9-dnsutils prometheus prometheus-alertmanager runc
    containernetworking-plugins nftables musl-tools python3.11-minimal openjdk-17-jdk-headless)

apt_install() {
    local missing=() p
    for p in "${APT_PACKAGES[@]}"; do
        if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" != "install ok installed" ]; then
            missing+=("$p")
        fi
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        log "apt packages: ${APT_PACKAGES[*]} ... up to date"
        return
    fi
    command -v apt-get >/dev/null || die "apt-get not found; install ${missing[*]} by hand"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || die "need root (or sudo) to install ${missing[*]}"
        sudo=(sudo)
    fi
    # Keep the packages' init scripts from starting named/prometheus as
    # daemons (they would take ports the tests want): policy-rc.d exit 101
    # means "do not start services". Only added if the machine has none.
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
        "${sudo[@]}" chmod 755 "$policy"
        added_policy=1
    fi
    local start=$SECONDS rc=0 aptlog
    aptlog="$(mktemp)"
    log "apt packages: installing ${missing[*]} ..."
    {
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            --no-install-recommends "${missing[@]}"
    } >"$aptlog" 2>&1 || rc=$?
    if [ "$added_policy" -eq 1 ]; then "${sudo[@]}" rm -f "$policy"; fi
    if [ "$rc" -ne 0 ]; then
        tail -n 30 "$aptlog" >&2
        die "apt-get install ${missing[*]} failed (exit $rc)"
    fi
    rm -f "$aptlog"
    log "apt packages: installing ${missing[*]} ... done in $((SECONDS - start))s"
}

# -------------------------------------------------------------------- Go ----
export GOTOOLCHAIN=local  # build with the installed Go, never fetch another
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
    PATH="$PATH:/usr/local/go/bin"
fi
command -v go >/dev/null || die "go not found in PATH (need Go >= 1.26)"
gov="$(go env GOVERSION)"                 # e.g. go1.26.8
gominor="${gov#go1.}"; gominor="${gominor%%.*}"; gominor="${gominor%%[!0-9]*}"
case "$gov" in go1.*) ;; *) die "unexpected Go version $gov";; esac
[ "${gominor:-0}" -ge 26 ] || die "$gov is too old: go.mod needs Go >= 1.26"

export CGO_ENABLED=0      # static binaries, no C compiler needed
# -mod=readonly: go.mod/go.sum are complete, a build must not rewrite them.
export GOFLAGS="-mod=readonly -trimpath -buildvcs=false"

# pinned <module> in <dir>/go.mod (the require line, not a replace line)
pinned() {
    local v
    v="$(awk -v m="$2" '
        $1 == "require" && $2 == m && $3 ~ /^v[0-9]/ { print $3; exit }
        $1 == m && $2 ~ /^v[0-9]/ { print $2; exit }' "$1/go.mod")"
    [ -n "$v" ] || die "$2 is not required in $1/go.mod"
    printf '%s' "$v"
}

K8S_VERSION="$(pinned "$HERE" k8s.io/kubernetes)"          # v1.36.3
KWOK_VERSION="$(pinned "$HERE" sigs.k8s.io/kwok)"          # v0.8.0
HELM_VERSION="$(pinned "$HERE/helm" helm.sh/helm/v3)"      # v3.22.0
ETCD_VERSION="$(pinned "$HERE/etcd" go.etcd.io/etcd/server/v3)"  # v3.6.16
CONTAINERD_VERSION="$(pinned "$HERE/containerd" github.com/containerd/containerd/v2)"  # v2.4.2
HELM_CLIENT_GO="$(pinned "$HERE/helm" k8s.io/client-go)"   # v0.37.0
PEBBLE_VERSION="$(pinned "$HERE/pebble" github.com/letsencrypt/pebble/v2)"  # v2.10.3
COREDNS_VERSION="$(pinned "$HERE/coredns" github.com/coredns/coredns)"     # v1.15.0
OCB_VERSION="$(pinned "$HERE/otelcol" go.opentelemetry.io/collector/cmd/builder)"  # v0.161.0
REGISTRY_VERSION="$(pinned "$HERE/registry" github.com/distribution/distribution/v3)"  # v3.1.2
THANOS_VERSION="$(pinned "$HERE/thanos" github.com/thanos-io/thanos)"       # v0.42.4
JAEGER_VERSION="$(pinned "$HERE/jaeger" github.com/jaegertracing/jaeger)"   # v1.75.0 (Jaeger v2.12.0)
SLOTH_VERSION="$(pinned "$HERE/sloth" github.com/slok/sloth)"               # v0.16.0

k8s_minor="${K8S_VERSION#v1.}"; k8s_minor="${k8s_minor%%.*}"
BUILD_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

# Version variables that the upstream release builds set (hack/lib/version.sh
# in kubernetes, Makefile in helm); without them /version says v0.0.0.
K8S_LDFLAGS=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    K8S_LDFLAGS+=" -X $pkg.gitVersion=$K8S_VERSION"
    K8S_LDFLAGS+=" -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor"
    K8S_LDFLAGS+=" -X $pkg.gitCommit= -X $pkg.gitTreeState=clean"
    K8S_LDFLAGS+=" -X $pkg.buildDate=$BUILD_DATE"
done
# helm's Makefile derives its default Capabilities.KubeVersion from its client-go
cg_minor="${HELM_CLIENT_GO#v0.}"; cg_minor="${cg_minor%%.*}"
HELM_LDFLAGS="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
HELM_LDFLAGS+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    HELM_LDFLAGS+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$cg_minor"
done
KWOK_LDFLAGS="-X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}"
KWOK_LDFLAGS+=" -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${K8S_VERSION#v}"
ETCD_LDFLAGS=""
# containerd's Makefile sets its version and revision the same way (`ctr version`).
CONTAINERD_LDFLAGS="-X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION"
CONTAINERD_LDFLAGS+=" -X github.com/containerd/containerd/v2/version.Revision=$CONTAINERD_VERSION"
# pebble's main.version is meant to be set with -ldflags (cmd/pebble/main.go);
# without it `pebble -version` says dev
PEBBLE_LDFLAGS="-X main.version=$PEBBLE_VERSION"
# CoreDNS's version (1.15.0) is in its source (coremain.CoreVersion); its
# Makefile puts `git describe` into coremain.GitCommit, which `coredns -version`
# prints after the Go version. The module zip has no git data: use the tag.
COREDNS_LDFLAGS="-X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION"
# Distribution's Makefile sets its version the same way (`registry --version`).
REGISTRY_LDFLAGS="-X github.com/distribution/distribution/v3/version.version=$REGISTRY_VERSION"
# Thanos' .promu.yml sets prometheus/common's version variables (`thanos --version`).
THANOS_LDFLAGS=""
for var in Version Branch Revision; do
    THANOS_LDFLAGS+=" -X github.com/prometheus/common/version.$var=${THANOS_VERSION#v}"
done
# Jaeger's Makefile sets these; module v1.75.0 is the Jaeger v2.12.0 release
# (its CHANGELOG), which `jaeger version` says.
JAEGER_LDFLAGS="-X github.com/jaegertracing/jaeger/internal/version.latestVersion=v2.12.0"
JAEGER_LDFLAGS+=" -X github.com/jaegertracing/jaeger/internal/version.commitSHA=$JAEGER_VERSION"
JAEGER_LDFLAGS+=" -X github.com/jaegertracing/jaeger/internal/version.date=2025-11-18T00:00:00Z"

# build <name> <version> <module dir> <package> <extra ldflags>
build() {
    local name="$1" version="$2" dir="$3" pkg="$4" ldflags="$5"
    local out="$BIN/$name" stamp="$BIN/.$name.version" want
    want="$version $gov sum:$(cat "$dir/go.mod" "$dir/go.sum" | sha256sum | cut -c1-12)"
    if [ "$FORCE" != 1 ] && [ -x "$out" ] && [ -f "$stamp" ] &&
        [ "$(cat "$stamp")" = "$want" ]; then
        log "$name $version ... up to date"
        return
    fi
    local start=$SECONDS
    log "building $name $version ..."
    rm -f "$stamp"
    # go prints one "go: downloading" line per module on a cold cache: hide
    # those, keep everything else (compile errors).
    (cd "$dir" && go build -o "$out.tmp" -ldflags "-s -w $ldflags" "$pkg" 2>&1 |
        { grep -v '^go: downloading ' || true; } >&2) ||
        die "building $name failed"
    mv -f "$out.tmp" "$out"
    printf '%s\n' "$want" >"$stamp"
    log "building $name $version ... done in $((SECONDS - start))s"
}

total_start=$SECONDS
mkdir -p "$BIN"
if [ "${SKIP_APT:-0}" != 1 ]; then apt_install; fi

# Biggest first: later binaries reuse its compiled packages from the build cache.
build kube-apiserver          "$K8S_VERSION"  "$HERE"      k8s.io/kubernetes/cmd/kube-apiserver          "$K8S_LDFLAGS"
build kube-controller-manager "$K8S_VERSION"  "$HERE"      k8s.io/kubernetes/cmd/kube-controller-manager "$K8S_LDFLAGS"
build kube-scheduler          "$K8S_VERSION"  "$HERE"      k8s.io/kubernetes/cmd/kube-scheduler          "$K8S_LDFLAGS"
build kubectl                 "$K8S_VERSION"  "$HERE"      k8s.io/kubernetes/cmd/kubectl                 "$K8S_LDFLAGS"
build kubelet                 "$K8S_VERSION"  "$HERE"      k8s.io/kubernetes/cmd/kubelet                 "$K8S_LDFLAGS"
build kwok                    "$KWOK_VERSION" "$HERE"      sigs.k8s.io/kwok/cmd/kwok                     "$KWOK_LDFLAGS"
build helm                    "$HELM_VERSION" "$HERE/helm" helm.sh/helm/v3/cmd/helm                      "$HELM_LDFLAGS"
build etcd                    "$ETCD_VERSION" "$HERE/etcd" go.etcd.io/etcd/server/v3                     "$ETCD_LDFLAGS"
# containerd's build tags as its own release builds set them for a static binary with
# no btrfs snapshotter (no btrfs headers needed).
GOFLAGS="$GOFLAGS -tags=urfave_cli_no_docs,no_btrfs" \
build containerd              "$CONTAINERD_VERSION" "$HERE/containerd" github.com/containerd/containerd/v2/cmd/containerd "$CONTAINERD_LDFLAGS"
GOFLAGS="$GOFLAGS -tags=urfave_cli_no_docs,no_btrfs" \
build containerd-shim-runc-v2 "$CONTAINERD_VERSION" "$HERE/containerd" github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 "$CONTAINERD_LDFLAGS"
GOFLAGS="$GOFLAGS -tags=urfave_cli_no_docs,no_btrfs" \
build ctr                     "$CONTAINERD_VERSION" "$HERE/containerd" github.com/containerd/containerd/v2/cmd/ctr "$CONTAINERD_LDFLAGS"
build pebble                  "$PEBBLE_VERSION" "$HERE/pebble" github.com/letsencrypt/pebble/v2/cmd/pebble "$PEBBLE_LDFLAGS"
# The module root is CoreDNS's main package (coredns.go), with all the plugins
# of its plugin.cfg compiled in.
build coredns                 "$COREDNS_VERSION" "$HERE/coredns" github.com/coredns/coredns            "$COREDNS_LDFLAGS"
build registry                "$REGISTRY_VERSION" "$HERE/registry" github.com/distribution/distribution/v3/cmd/registry "$REGISTRY_LDFLAGS"
# Thanos' release tags: netgo, and slicelabels, which its labelpb casts rely on.
GOFLAGS="$GOFLAGS -tags=netgo,slicelabels" \
build thanos                  "$THANOS_VERSION" "$HERE/thanos" github.com/thanos-io/thanos/cmd/thanos "$THANOS_LDFLAGS"
build jaeger                  "$JAEGER_VERSION" "$HERE/jaeger" github.com/jaegertracing/jaeger/cmd/jaeger "$JAEGER_LDFLAGS"
# The benchmark peers: not needed by `make test`. Sloth's build script sets info.Version.
if [ "${PEERS:-0}" = 1 ]; then
    build sloth                   "$SLOTH_VERSION" "$HERE/sloth" github.com/slok/sloth/cmd/sloth "-X github.com/slok/sloth/internal/info.Version=$SLOTH_VERSION"
fi

# OpenTelemetry Collectors (TelemetryPipeline tests), built the way their
# docs describe: the Collector Builder (ocb, pinned in otelcol/go.mod) turns a
# builder config into sources. The module graph is pinned in otelcol/<name>/
# go.mod+go.sum, so ocb only generates (no `go get`), and the build is
# -mod=readonly like every other tool here.
#   otelcol-vigil    otelcol/vigil.yaml: the components Vigil generates
#   otelcol-backend  otelcol/backend.yaml: OTLP in, file out (a test backend)
build ocb                     "$OCB_VERSION" "$HERE/otelcol" go.opentelemetry.io/collector/cmd/builder ""
build_collector() {
    local name="otelcol-$1" cfg="$HERE/otelcol/$1.yaml" mod="$HERE/otelcol/$1"
    local out="$BIN/otelcol-$1" stamp="$BIN/.otelcol-$1.version" version want src
    version="v$(awk '$1 == "version:" { print $2; exit }' "$cfg")"
    # stubs/: local stand-ins that go.mod's replace directives name (vigil.yaml says why).
    want="$version $gov ocb:$OCB_VERSION sum:$(cat "$cfg" "$mod/go.mod" "$mod/go.sum" \
        $(find "$mod" -path "$mod/stubs/*" -type f | LC_ALL=C sort) | sha256sum | cut -c1-12)"
    if [ "$FORCE" != 1 ] && [ -x "$out" ] && [ -f "$stamp" ] &&
        [ "$(cat "$stamp")" = "$want" ]; then
        log "$name $version ... up to date"
        return
    fi
    local start=$SECONDS
    log "building $name $version with ocb ..."
    rm -f "$stamp"
    src="$(dirname "$BIN")/otelcol/$1"
    rm -rf "$src" && mkdir -p "$src"
    sed "s#^\(  output_path:\).*#\1 $src#" "$cfg" >"$src.yaml"
    "$BIN/ocb" --config "$src.yaml" --skip-get-modules --skip-compilation >"$src.log" 2>&1 || {
        cat "$src.log" >&2; die "ocb could not generate $name"; }
    cp "$mod/go.mod" "$mod/go.sum" "$src/"
    if [ -d "$mod/stubs" ]; then cp -R "$mod/stubs" "$src/"; fi
    (cd "$src" && go build -o "$out.tmp" -ldflags "-s -w" . 2>&1 |
        { grep -v '^go: downloading ' || true; } >&2) ||
        die "building $name failed"
    mv -f "$out.tmp" "$out"
    printf '%s\n' "$want" >"$stamp"
    log "building $name $version ... done in $((SECONDS - start))s"
}
build_collector backend
build_collector vigil

# kwok has no built-in stages: without Stage objects (from --config or the
# Stage CRD) it refuses to start, and nodes/pods never change state. Assemble
# the defaults that kwokctl uses (node-initialize, node-heartbeat-with-lease,
# pod-ready, pod-complete, pod-delete) from the pinned kwok module into
# .tools/kwok/stages.yaml, for `kwok --config=.tools/kwok/stages.yaml`.
STAGES="$(dirname "$BIN")/kwok/stages.yaml"
STAGES_HEADER="# kwok default stages from sigs.k8s.io/kwok@$KWOK_VERSION; pod-complete skips collector-validation pods"
if [ "$FORCE" = 1 ] || [ ! -f "$STAGES" ] || [ "$(head -n 1 "$STAGES")" != "$STAGES_HEADER" ]; then
    kwokdir="$(cd "$HERE" && go mod download -json sigs.k8s.io/kwok |
        sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')"
    [ -d "$kwokdir/kustomize/stage" ] || die "kwok module source not found (got '$kwokdir')"
    mkdir -p "$(dirname "$STAGES")"
    {
        echo "$STAGES_HEADER"
        for f in node/fast/node-initialize.yaml \
                 node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
                 pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
            echo "---"
            # One change: pod-complete leaves Vigil's Collector validation pods alone
            # (label app.kubernetes.io/component=collector-validation). The e2e harness
            # runs those with the real Collector and writes their outcome, like a kubelet
            # (e2e/src/otelcol.rs, ValidationKubelet); kwok would call every one a success.
            if [ "$f" = pod/fast/pod-complete.yaml ]; then
                awk '{ print }
                     /^      - .Job.$/ {
                        print "    - key: '"'"'.metadata.labels.[\"app.kubernetes.io/component\"]'"'"'"
                        print "      operator: '"'"'NotIn'"'"'"
                        print "      values:"
                        print "      - '"'"'collector-validation'"'"'"
                     }' "$kwokdir/kustomize/stage/$f"
            else
                cat "$kwokdir/kustomize/stage/$f"
            fi
        done
    } >"$STAGES.tmp"
    mv -f "$STAGES.tmp" "$STAGES"
    log "kwok stages $KWOK_VERSION -> ${STAGES#"$REPO"/} ... done"
else
    log "kwok stages $KWOK_VERSION ... up to date"
fi

# The pause image of the real node's pods (no registry is reachable to pull one): a
# static build of pause/pause.c packed by scripts/oci-image.py into .tools/images/, with
# the name the node's containerd is configured with (e2e/src/node.rs, PAUSE_IMAGE).
PAUSE_IMAGE="vigil.test/pause:1"
PAUSE_TAR="$(dirname "$BIN")/images/pause.tar"
pause_want="$PAUSE_IMAGE $(sha256sum "$HERE/pause/pause.c" "$REPO/scripts/oci-image.py" | sha256sum | cut -c1-12)"
if [ "$FORCE" != 1 ] && [ -f "$PAUSE_TAR" ] && [ "$(cat "$PAUSE_TAR.version" 2>/dev/null)" = "$pause_want" ]; then
    log "pause image ... up to date"
else
    mkdir -p "$(dirname "$PAUSE_TAR")"
    musl-gcc -static -Os -s -o "$BIN/pause" "$HERE/pause/pause.c" || die "building pause failed"
    "$REPO/scripts/oci-image.py" --name "$PAUSE_IMAGE" --out "$PAUSE_TAR" \
        --file "/pause=$BIN/pause:0755" --entrypoint /pause --user 65535:65535 >/dev/null ||
        die "packing the pause image failed"
    printf '%s\n' "$pause_want" >"$PAUSE_TAR.version"
    log "pause image $PAUSE_IMAGE -> ${PAUSE_TAR#"$REPO"/} ... done"
fi


# The operator image is built for the musl target (static): `make image`, and
# so is the Rust crash program below.
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx x86_64-unknown-linux-musl; then
    log "rust target x86_64-unknown-linux-musl ... installing"
    rustup target add x86_64-unknown-linux-musl >&2 || die "rustup target add x86_64-unknown-linux-musl failed"
fi

# The crash programs of the workload tests on the real node (e2e/tools/crashers/), packed
# with scripts/oci-image.py into one image, vigil.test/crashers:1 (.tools/images/): a Go
# service that panics, runs out of memory, exits 0 or serves (crasher), a C program killed
# by a real SIGSEGV (segv), a Rust program that panics (rust-panic, static for musl), a
# Python program that raises (crash.py) and a Java program that throws (Crash.java).
CRASHERS_IMAGE="vigil.test/crashers:1"
CRASHERS_TAR="$(dirname "$BIN")/images/crashers.tar"
CRASHERS_SRC="$HERE/crashers"
crashers_want="$CRASHERS_IMAGE $gov $(rustc --version | cut -d' ' -f2) $(cat "$CRASHERS_SRC"/* "$REPO/scripts/oci-image.py" | sha256sum | cut -c1-12)"
if [ "$FORCE" != 1 ] && [ -f "$CRASHERS_TAR" ] && [ "$(cat "$CRASHERS_TAR.version" 2>/dev/null)" = "$crashers_want" ]; then
    log "crashers image ... up to date"
else
    crashers_out="$(dirname "$BIN")/crashers"
    mkdir -p "$crashers_out" "$(dirname "$CRASHERS_TAR")"
    (cd "$CRASHERS_SRC" && go build -o "$crashers_out/crasher" .) || die "building crasher failed"
    musl-gcc -static -O1 -o "$crashers_out/segv" "$CRASHERS_SRC/segv.c" || die "building segv failed"
    # Line tables only: the backtrace names files and lines, as a release build with
    # debug = "line-tables-only" does.
    rustc --edition 2024 --target x86_64-unknown-linux-musl -C opt-level=1 \
        -C debuginfo=line-tables-only --remap-path-prefix="$CRASHERS_SRC=/src" \
        -o "$crashers_out/rust-panic" "$CRASHERS_SRC/panic.rs" || die "building rust-panic failed"
    # Python and Java are not static: their runtimes come from this machine's Debian
    # packages (python3.11-minimal, openjdk-17-jdk-headless's jlink), with the shared
    # libraries ldd names and the dynamic loader, into a staging folder.
    runtime="$crashers_out/runtime"
    rm -rf "$runtime" && mkdir -p "$runtime/usr/bin" "$runtime/usr/lib" "$runtime/opt" "$runtime/app"
    cp -L /usr/bin/python3.11 "$runtime/usr/bin/python3"
    (cd /usr/lib && tar -cf - --exclude=__pycache__ --exclude=test --exclude=tests \
        --exclude=idlelib --exclude=tkinter --exclude=turtledemo --exclude=ensurepip \
        --exclude=lib2to3 --exclude=pydoc_data --exclude=dist-packages --exclude=site-packages \
        python3.11) | tar -xf - -C "$runtime/usr/lib"
    cp "$CRASHERS_SRC/crash.py" "$runtime/app/crash.py"
    jlink --add-modules java.base --output "$runtime/opt/java" --strip-debug --no-man-pages \
        --no-header-files --compress=2 || die "jlink failed"
    javac -d "$runtime/app" "$CRASHERS_SRC/Crash.java" || die "javac Crash.java failed"
    find "$runtime/usr/bin" "$runtime/opt/java" \
        -type f \( -perm -u+x -o -name '*.so*' \) -print0 |
        { LD_LIBRARY_PATH="$runtime/opt/java/lib:$runtime/opt/java/lib/server" xargs -0 ldd 2>/dev/null || true; } |
        awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\/lib64\// { print $1 }' |
        { grep -v "^$runtime" || true; } | sort -u |
        while read -r library; do
            mkdir -p "$runtime$(dirname "$library")"
            cp -L "$library" "$runtime$library"
        done
    "$REPO/scripts/oci-image.py" --name "$CRASHERS_IMAGE" --out "$CRASHERS_TAR" --tree "/=$runtime" \
        --file "/crasher=$crashers_out/crasher:0755" --file "/segv=$crashers_out/segv:0755" \
        --file "/rust-panic=$crashers_out/rust-panic:0755" --user 65532:65532 >/dev/null ||
        die "packing the crashers image failed"
    rm -rf "$runtime"
    printf '%s\n' "$crashers_want" >"$CRASHERS_TAR.version"
    log "crashers image $CRASHERS_IMAGE -> ${CRASHERS_TAR#"$REPO"/} ... done"
fi

# The CoreDNS image of a Dedicated CrossCloudDNS on the real node: the coredns built above,
# static, under the name Vigil deploys by default (coredns/coredns:1.15.0, the release it
# is built from; containerd knows it by its full name, docker.io/...), so the unchanged
# Deployment runs it without a registry.
COREDNS_IMAGE="docker.io/coredns/coredns:${COREDNS_VERSION#v}"
COREDNS_TAR="$(dirname "$BIN")/images/coredns.tar"
coredns_want="$COREDNS_IMAGE $(cat "$BIN/.coredns.version") $(sha256sum "$REPO/scripts/oci-image.py" | cut -c1-12)"
if [ "$FORCE" != 1 ] && [ -f "$COREDNS_TAR" ] && [ "$(cat "$COREDNS_TAR.version" 2>/dev/null)" = "$coredns_want" ]; then
    log "coredns image ... up to date"
else
    mkdir -p "$(dirname "$COREDNS_TAR")"
    "$REPO/scripts/oci-image.py" --name "$COREDNS_IMAGE" --out "$COREDNS_TAR" \
        --file "/coredns=$BIN/coredns:0755" --entrypoint /coredns --user 65532:65532 >/dev/null ||
        die "packing the coredns image failed"
    printf '%s\n' "$coredns_want" >"$COREDNS_TAR.version"
    log "coredns image $COREDNS_IMAGE -> ${COREDNS_TAR#"$REPO"/} ... done"
fi

# The Collector image of TelemetryPipelines on the real node (validation Jobs, gateways,
# sidecars): otelcol-vigil, built above with every component Vigil generates, static.
OTELCOL_IMAGE="vigil.test/otelcol-vigil:$(awk '$1 == "version:" { print $2; exit }' "$HERE/otelcol/vigil.yaml")"
OTELCOL_TAR="$(dirname "$BIN")/images/otelcol-vigil.tar"
otelcol_want="$OTELCOL_IMAGE $(cat "$BIN/.otelcol-vigil.version") $(sha256sum "$REPO/scripts/oci-image.py" | cut -c1-12)"
if [ "$FORCE" != 1 ] && [ -f "$OTELCOL_TAR" ] && [ "$(cat "$OTELCOL_TAR.version" 2>/dev/null)" = "$otelcol_want" ]; then
    log "otelcol-vigil image ... up to date"
else
    mkdir -p "$(dirname "$OTELCOL_TAR")"
    "$REPO/scripts/oci-image.py" --name "$OTELCOL_IMAGE" --out "$OTELCOL_TAR" \
        --file "/otelcol-vigil=$BIN/otelcol-vigil:0755" --entrypoint /otelcol-vigil \
        --user 65532:65532 >/dev/null || die "packing the otelcol-vigil image failed"
    printf '%s\n' "$otelcol_want" >"$OTELCOL_TAR.version"
    log "otelcol-vigil image $OTELCOL_IMAGE -> ${OTELCOL_TAR#"$REPO"/} ... done"
fi

log "tools in $BIN ready in $((SECONDS - total_start))s"
