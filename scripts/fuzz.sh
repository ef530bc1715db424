#!/usr/bin/env bash
# make fuzz: runs every cargo-fuzz target (fuzz/fuzz_targets/) for FUZZ_SECONDS each
# (default 300), seeded with the project's own inputs, and prints executions and findings
# per target. A finding (a panic, a crash, a timeout) fails the run and leaves its input in
# fuzz/artifacts/<target>/; replay it with
#   PATH=.tools/cargo/bin:$PATH cargo +nightly fuzz run <target> fuzz/artifacts/<target>/<file>
# `make test` runs it for 20 seconds per target.
#
# Needs the nightly toolchain (libFuzzer's instrumentation uses -Z flags; installed with
# rustup when missing) and cargo-fuzz, pinned below and installed into .tools/cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${FUZZ_SECONDS:-300}"
CARGO_FUZZ_VERSION=0.13.2
ROOT="$PWD/.tools/cargo"

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
fi
if [ "$("$ROOT/bin/cargo-fuzz" --version 2>/dev/null || true)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --root "$ROOT" --quiet
fi
export PATH="$ROOT/bin:$PATH"
# The instrumented build (nightly, ASan) of every dependency takes minutes: keep it in a
# cache outside the checkout, shared by clones, like Go's build cache.
TARGET_DIR="${VIGIL_FUZZ_TARGET_DIR:-$HOME/.cache/vigil/fuzz-target}"

# Seeds: every example and invalid manifest, every panic in the parser corpus.
seed() {
    local target="$1"; shift
    mkdir -p "fuzz/corpus/$target"
    local file
    for file in "$@"; do
        [ -f "$file" ] && cp "$file" "fuzz/corpus/$target/seed-$(sha256sum "$file" | cut -c1-16)"
    done
}
seed manifest examples/*/*.yaml operator/tests/invalid/*.yaml
seed panic_output operator/tests/panics/*
seed admission operator/tests/admission/*.json

summary=()
status=0
for target in manifest panic_output admission; do
    log="fuzz/$target.log"
    echo "== fuzzing $target for ${SECONDS_EACH}s"
    if cargo +nightly fuzz run --target-dir "$TARGET_DIR" "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
        >"$log" 2>&1; then
        result="no findings"
    else
        result="FINDING (see $log and fuzz/artifacts/$target/)"
        status=1
        tail -n 40 "$log"
    fi
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
    corpus="$(ls "fuzz/corpus/$target" | wc -l)"
    summary+=("$target: ${runs:-?} executions in ${SECONDS_EACH}s, corpus $corpus inputs, $result")
done
echo "== fuzz summary"
printf '%s\n' "${summary[@]}"
exit "$status"
