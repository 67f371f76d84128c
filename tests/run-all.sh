#!/usr/bin/env bash
# Runs every test of the project: the Rust suites (unit, property,
# integration, multi-process SIGKILL, damaged files, C ABI, C++ wrapper,
# command line, demo), the loom models, the Python tests, bounded fuzz runs
# and the quick bench. This is the README's test command; .ci/run installs
# what it needs and then calls it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

echo "== cargo test --release =="
cargo test --release

echo "== loom models (LOOM_MAX_PREEMPTIONS=${LOOM_MAX_PREEMPTIONS:-2}) =="
loom_tests=()
for t in tests/loom*.rs; do loom_tests+=(--test "$(basename "$t" .rs)"); done
LOOM_MAX_PREEMPTIONS=${LOOM_MAX_PREEMPTIONS:-2} RUSTFLAGS="--cfg shmq_loom" \
  cargo test --release --target-dir target/loom "${loom_tests[@]}"

echo "== python bindings (pytest) =="
SHMQ_LIBRARY="$root/target/release/deps/libshmq.so" python3 -m pytest -q bindings/python/tests

echo "== shmq bench --quick (every scenario runs, every message arrives; no speed is checked) =="
cargo build --release --bin shmq
target/release/shmq bench --quick

if cargo +nightly --version >/dev/null 2>&1 && command -v cargo-fuzz >/dev/null 2>&1; then
  echo "== fuzzing, bounded (nightly, AddressSanitizer) =="
  mkdir -p target/fuzz-corpus/header target/fuzz-corpus/open_and_operate
  cargo +nightly fuzz run header target/fuzz-corpus/header fuzz/seeds/header -- \
    -max_total_time="${SHMQ_FUZZ_SECS:-60}" -timeout=10 -max_len=8192
  cargo +nightly fuzz run open_and_operate target/fuzz-corpus/open_and_operate fuzz/seeds/open_and_operate -- \
    -max_total_time="${SHMQ_FUZZ_SECS:-60}" -timeout=10 -max_len=65536 -rss_limit_mb=4096
else
  echo "== fuzzing skipped: needs a nightly toolchain and cargo-fuzz =="
fi
echo "all tests passed"
