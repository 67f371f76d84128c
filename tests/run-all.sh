#!/usr/bin/env bash
# Runs every test of the project: the Rust suites, the loom models, and the
# C, C++ and Python tests. This is the README's test command; .ci/run installs
# what it needs and then calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test (unit, property, integration, multi-process) =="
cargo test --release

echo "== loom models =="
LOOM_MAX_PREEMPTIONS=${LOOM_MAX_PREEMPTIONS:-2} RUSTFLAGS="--cfg shmq_loom" \
  cargo test --release --target-dir target/loom --test loom
