#!/usr/bin/env bash
# Runs every test of the project: the Rust suites (unit, property,
# integration, multi-process SIGKILL, damaged files, C ABI, C++ wrapper,
# command line, demo), the loom models, the Python tests, bounded fuzz runs
# and the quick bench. This is the README's test command; .ci/run installs
# what it needs and then calls it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

echo "== cargo test --release --workspace =="
cargo test --release --workspace

echo "== loom models (LOOM_MAX_PREEMPTIONS=${LOOM_MAX_PREEMPTIONS:-2}) =="
loom_tests=()
for t in tests/loom*.rs; do loom_tests+=(--test "$(basename "$t" .rs)"); done
LOOM_MAX_PREEMPTIONS=${LOOM_MAX_PREEMPTIONS:-2} RUSTFLAGS="--cfg shmq_loom" \
  cargo test --release --target-dir target/loom "${loom_tests[@]}"

# The rare regime made common: with --cfg shmq_narrow the slot word's
# sequence and lap are 4 bits wide, so they wrap within a few dozen
# operations; the engine's unit tests, the property models, the rare-path
# tests and the loom models run again in that build.
echo "== narrow widths (--cfg shmq_narrow): unit, property, rare-path tests =="
RUSTFLAGS="--cfg shmq_narrow" cargo test --release --target-dir target/narrow \
  --lib --test model --test model_keys --test guarantees_rare_paths --test api --test keys
echo "== loom models, narrow widths =="
LOOM_MAX_PREEMPTIONS=${LOOM_MAX_PREEMPTIONS:-2} RUSTFLAGS="--cfg shmq_loom --cfg shmq_narrow" \
  cargo test --release --target-dir target/loom-narrow "${loom_tests[@]}"

# Overflow checks and debug assertions run only in a debug build.
echo "== cargo test --workspace (debug build) =="
cargo test --workspace --target-dir target/debug-suite

echo "== python bindings (pytest) =="
SHMQ_LIBRARY="$root/target/release/deps/libshmq.so" python3 -m pytest -q bindings/python/tests

echo "== shmq bench --quick (every scenario runs, every message arrives; no speed is checked) =="
cargo build --release --bin shmq
target/release/shmq bench --quick

if cargo +nightly --version >/dev/null 2>&1 && command -v cargo-fuzz >/dev/null 2>&1; then
  # Every target for SHMQ_FUZZ_SECS seconds (45 by default: about 3 minutes
  # of fuzzing in all), one process at a time, under AddressSanitizer, from
  # the committed seeds (fuzz/README.md).
  secs=${SHMQ_FUZZ_SECS:-45}
  echo "== fuzzing, bounded: ${secs} s per target (nightly, AddressSanitizer) =="
  cargo +nightly fuzz build
  for spec in header:8192 open_and_operate:65536 model_ops:4096 c_abi:2048; do
    target=${spec%%:*}
    mkdir -p "target/fuzz-corpus/$target"
    cargo +nightly fuzz run "$target" "target/fuzz-corpus/$target" "fuzz/seeds/$target" -- \
      -max_total_time="$secs" -timeout=10 -max_len="${spec##*:}" -rss_limit_mb=4096
  done
  # model_ops again in the narrow build (4-bit sequences and laps), so that
  # every input wraps them within a few operations.
  echo "== fuzzing model_ops with narrow widths (--cfg shmq_narrow): ${secs} s =="
  RUSTFLAGS="--cfg shmq_narrow" cargo +nightly fuzz run model_ops --target-dir target/fuzz-narrow \
    target/fuzz-corpus/model_ops fuzz/seeds/model_ops -- \
    -max_total_time="$secs" -timeout=10 -max_len=4096 -rss_limit_mb=4096
else
  echo "== fuzzing skipped: needs a nightly toolchain and cargo-fuzz =="
fi
echo "all tests passed"
