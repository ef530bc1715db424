# Vigil: `make test` runs every check CI runs; `make demo` shows Vigil on the examples.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
VIGIL := target/debug/vigil

.PHONY: all build lint fmt clippy deny test unit chart e2e fuzz fuzz-smoke bench bench-peers crds demo demo-down tools clean image dist
TOOLS := .tools/bin

all: build

build:
	$(CARGO) build --workspace --all-targets

## lint: formatting, clippy with warnings as errors, licenses/bans/sources
lint: fmt clippy deny

fmt:
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

deny: tools/cargo-deny
	$(CARGO) deny check licenses bans sources

# cargo-deny is installed with cargo when missing: the project needs nothing else.
.PHONY: tools/cargo-deny
tools/cargo-deny:
	@command -v cargo-deny >/dev/null 2>&1 || { echo "installing cargo-deny"; $(CARGO) install cargo-deny --locked; }

## test: everything CI runs: lint, unit/golden/corpus tests, the chart, end-to-end tests,
## and 20 seconds of each fuzz target
test: lint unit chart e2e fuzz-smoke

## fuzz: every cargo-fuzz target for FUZZ_SECONDS each (default 300); a finding fails it
FUZZ_SECONDS ?= 300
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh

fuzz-smoke:
	FUZZ_SECONDS=20 scripts/fuzz.sh

## tools: build the pinned peers (Kubernetes, kwok, Helm, etcd) into .tools/bin and install
## the Debian peers; only what is missing or at another version is rebuilt
tools:
	e2e/tools/install.sh

unit: tools
	$(CARGO) test --workspace --all-targets --exclude vigil-e2e

## chart: helm lint and helm template of charts/vigil
chart: tools
	$(TOOLS)/helm lint --strict charts/vigil
	$(TOOLS)/helm template vigil charts/vigil --namespace vigil-system > /dev/null
	$(TOOLS)/helm template vigil charts/vigil --namespace vigil-system \
	  --set crds.install=false,metrics.serviceMonitor.enabled=true,replicas=2,rbac.secretNamespaces={fleet} > /dev/null
	@# The chart's alerts on Vigil itself must be rules Prometheus accepts.
	@mkdir -p target
	$(TOOLS)/helm template vigil charts/vigil --namespace vigil-system --set metrics.prometheusRule.enabled=true \
	  --show-only templates/prometheusrule.yaml | sed -n '/^spec:$$/,$$p' | sed '1d; s/^  //' > target/vigil-alerts.yaml
	promtool check rules target/vigil-alerts.yaml

## image: the operator image as an OCI archive, without a container engine: a static musl
## build of `vigil` packed on scratch by scripts/oci-image.py (the same image as
## Containerfile). Reproducible: the same commit gives the same digest.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
REVISION := $(shell git rev-parse HEAD 2>/dev/null)$(shell git diff --quiet HEAD 2>/dev/null || echo -dirty)
IMAGE_REPOSITORY := ghcr.io/vigil-operator/vigil
MUSL := x86_64-unknown-linux-musl
IMAGE := target/image/vigil-$(VERSION)-amd64.tar
# Release builds name no path of this machine: the same commit gives the same binary.
RELEASE_RUSTFLAGS := -C strip=debuginfo --remap-path-prefix=$(CURDIR)=/vigil --remap-path-prefix=$(HOME)/.cargo=/cargo
image: tools
	VIGIL_GIT_REVISION=$(REVISION) CC_x86_64_unknown_linux_musl=musl-gcc \
	  CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="$(RELEASE_RUSTFLAGS)" \
	  $(CARGO) build --locked --release --target $(MUSL) --bin vigil
	@VIGIL_GIT_REVISION=$(REVISION) IMAGE_REPOSITORY=$(IMAGE_REPOSITORY) \
	  scripts/image.sh amd64 target/$(MUSL)/release/vigil $(IMAGE)

## dist: the release artifacts in dist/ (scripts/dist.sh): static vigil for linux amd64 and
## arm64, their images, the packaged chart, the CRD bundle, SBOMs and SHA256SUMS
dist: image
	VIGIL_GIT_REVISION=$(REVISION) IMAGE_REPOSITORY=$(IMAGE_REPOSITORY) \
	  RELEASE_RUSTFLAGS="$(RELEASE_RUSTFLAGS)" scripts/dist.sh

## e2e: end-to-end tests on real control planes (two at a time: this machine has 2 cores);
## the real-node tests run the image of `make image`
e2e: tools image
	$(CARGO) build --bin vigil
	$(CARGO) test -p vigil-e2e -- --test-threads=2

## bench: figures for the notes, on real parts (release builds)
bench: tools
	$(CARGO) build --release --bin vigil -p vigil
	$(CARGO) build --release --bin vigil-bench -p vigil-e2e
	@# The suite: one JSON document (docs/performance.md), also kept in target/bench-suite.json.
	VIGIL_BIN=$(CURDIR)/target/release/vigil target/release/vigil-bench suite 1000 10000 | tee target/bench-suite.json
	target/release/vigil-bench render 1000
	VIGIL_BIN=$(CURDIR)/target/release/vigil target/release/vigil-bench cluster 1000
	target/release/vigil-bench prometheus 100
	VIGIL_BIN=$(CURDIR)/target/release/vigil target/release/vigil-bench certificates 100
	target/release/vigil-bench dns-render 32
	target/release/vigil-bench dns-render 50
	target/release/vigil-bench dns-latency 3000
	VIGIL_BIN=$(CURDIR)/target/release/vigil target/release/vigil-bench crashes 100
	target/release/vigil-bench otel-render 100
	target/release/vigil-bench otel-throughput 20

## bench-peers: Vigil side by side with the peers users would pick instead (not part of
## `make test`): `vigil render` and `sloth generate` of the same 1000 SLOs, whole processes,
## medians of 7 runs (scripts/bench-peers.py); kept in target/bench-peers.json
bench-peers:
	PEERS=1 e2e/tools/install.sh
	$(CARGO) build --release --bin vigil -p vigil
	scripts/bench-peers.py | tee target/bench-peers.json

## crds: regenerate crds/ and the chart's CRD templates from the Rust types
crds:
	$(CARGO) run --quiet --bin vigil -- crds -o crds
	$(CARGO) run --quiet --bin vigil -- crds --helm -o charts/vigil/templates/crds

## demo: a local fleet of three clusters, the chart, the operator and the examples; stays up
demo: tools image
	@echo "== vigil validate -f examples/"
	$(CARGO) run --quiet --bin vigil -- validate -f examples/
	scripts/demo.sh

## demo-down: stop what `make demo` started
demo-down:
	scripts/demo-down.sh

clean:
	rm -rf dist
	$(CARGO) clean
