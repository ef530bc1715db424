# Vigil: `make test` runs every check CI runs; `make demo` shows Vigil on the examples.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
VIGIL := target/debug/vigil

.PHONY: all build lint fmt clippy deny test unit crds crds-check demo tools clean

all: build

build:
	$(CARGO) build --workspace --all-targets

## lint: formatting, clippy with warnings as errors, licenses/bans/sources
lint: fmt clippy deny

fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

deny: tools/cargo-deny
	$(CARGO) deny check licenses bans sources

# cargo-deny is installed with cargo when missing: the project needs nothing else.
.PHONY: tools/cargo-deny
tools/cargo-deny:
	@command -v cargo-deny >/dev/null 2>&1 || { echo "installing cargo-deny"; $(CARGO) install cargo-deny --locked; }

## test: lint, then unit, golden, corpus and CRD staleness tests
test: lint unit

unit:
	$(CARGO) test --workspace --all-targets

## crds: regenerate crds/ and the chart's CRD templates from the Rust types
crds:
	$(CARGO) run --quiet --bin vigil -- crds -o crds
	$(CARGO) run --quiet --bin vigil -- crds --helm -o charts/vigil/templates/crds

## demo: validate and render the examples offline
demo:
	$(CARGO) build --quiet --bin vigil
	@echo "== vigil validate -f examples/"
	$(VIGIL) validate -f examples/
	@echo
	@echo "== vigil render -f examples/"
	$(VIGIL) render -f examples/
	@echo
	@echo "== the CRDs: vigil crds | kubectl apply -f -"
	$(VIGIL) crds | grep -E '^  name: ' | sed 's/^  name: /  /'

clean:
	$(CARGO) clean
