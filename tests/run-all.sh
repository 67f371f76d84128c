#!/usr/bin/env bash
# Runs every test of the project: formatting, clippy (warnings denied,
# rust-version checked by its incompatible_msrv lint) and the docs first,
# then the Rust suites (unit, property, integration, README doctests, Rust
# examples, multi-process SIGKILL, damaged files, C ABI, C++ wrapper, command
# line, demo), the loom models, a debug build of the suite, the Python tests,
# the quick bench and bounded fuzz runs. This is the README's test command,
# and it sets up what it needs on a fresh machine with Rust, gcc and python3:
# a fresh virtual environment under target/py with pytest, mypy and the Python
# package built from this tree (`pip install ./bindings/python`, which
# fetches maturin from PyPI), and, when a nightly toolchain is installed,
# cargo-fuzz. `.ci/run` only calls it.
#
# SHMQ_QUICK=1 runs the first stages only (set-up, fmt, clippy, docs, the
# release test suite, the Python tests) and skips the loom models, the
# narrow-width builds, the debug-build suite, the bench and fuzzing: for a
# quick check, never for CI.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
quick=${SHMQ_QUICK:-0}

# ---------------------------------------------------------------------------
# Set-up: a fresh Python environment for the Python tests, with pytest; the
# package itself is built and installed into it after the Rust tests.
# ---------------------------------------------------------------------------
echo "== set-up: a fresh virtual environment (target/py) with pytest and mypy =="
rm -rf "$root/target/py" "$root/target/py-site"
if python3 -m venv "$root/target/py" >/dev/null 2>&1 && [ -x "$root/target/py/bin/python" ]; then
  # A virtual environment: no system package changes, and it works where
  # Debian's python3 is "externally managed".
  python=$root/target/py/bin/python
  py_env=()
  "$python" -m pip install --quiet pytest mypy
else
  # No venv module (Debian without python3-venv): pytest and the package go
  # into a directory of their own under target/, on PYTHONPATH.
  echo "python3 -m venv is not available (Debian: apt-get install python3-venv); using pip --target target/py-site"
  rm -rf "$root/target/py"
  python=python3
  py_env=(env "PYTHONPATH=$root/target/py-site")
  pip_target() {
    python3 -m pip install --quiet --target "$root/target/py-site" "$@" \
      || python3 -m pip install --quiet --target "$root/target/py-site" --break-system-packages "$@"
  }
  pip_target pytest mypy
fi
"${py_env[@]}" "$python" -m pytest --version

# The bridge's tests run against a real JetStream server: Debian's
# nats-server, installed here when missing and we may (root); without it
# they say they are skipped, and with it they must run (SHMQ_REQUIRE_NATS).
echo "== set-up: nats-server for the bridge tests =="
if ! command -v nats-server >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && apt-get install -y -qq nats-server) >/dev/null 2>&1 \
    || echo "could not install nats-server (apt-get install nats-server)"
fi
if command -v nats-server >/dev/null 2>&1; then
  export SHMQ_REQUIRE_NATS=1
  nats-server --version
else
  echo "nats-server is not installed: the bridge tests will be skipped"
fi

echo "== cargo fmt --check =="
cargo fmt --all --check

echo "== cargo clippy --workspace --all-targets -- -D warnings =="
cargo clippy --workspace --all-targets -- -D warnings

# The C ABI's library and the command line's binary are also called `shmq`,
# so their docs and the engine's would land on the same path: each is
# documented on its own first, and the engine's docs then take target/doc/shmq.
echo "== cargo doc --no-deps (warnings denied) =="
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p shmq-c
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p shmq-cli
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p shmq -p shmq-bench -p shmq-testkit -p shmq-python -p shmq-bridge

# `cargo test` does not build a crate that is only a cdylib and a staticlib:
# the C library (libshmq.so, libshmq.a) is built first, for the C, C++ and
# Python tests and the bench's C peer.
echo "== cargo build --release -p shmq-c (the C library) =="
cargo build --release -p shmq-c

echo "== cargo test --release --workspace =="
cargo test --release --workspace

# The Python package as a user gets it: built by maturin (from PyPI, in
# pip's isolated build environment) into a wheel that carries the engine,
# installed into the fresh environment, and tested from a directory where
# the source tree's package is not importable. SHMQ_LIBRARY names the C
# library only for the C consumer of test_multiprocess.py.
echo "== python package: pip install ./bindings/python, pytest against the installed wheel =="
if [ -n "${py_env[*]}" ]; then
  CARGO_BUILD_JOBS=1 pip_target ./bindings/python
else
  CARGO_BUILD_JOBS=1 "$python" -m pip install --quiet ./bindings/python
fi
mkdir -p "$root/target/py-run"
(cd "$root/target/py-run" && SHMQ_LIBRARY="$root/target/release/deps/libshmq.so" \
  "${py_env[@]}" "$python" -m pytest -q -p no:cacheprovider "$root/bindings/python/tests")

# The package's types as a user's type checker reads them: its sources
# and stubs (the extension's in _native.pyi), and the Python examples.
echo "== mypy --strict: the Python package and its stubs, examples/python =="
(cd "$root/bindings/python" && "${py_env[@]}" "$python" -m mypy --strict \
  --cache-dir "$root/target/mypy-cache" python/shmq "$root"/examples/python/*.py)

if [ "$quick" = 1 ]; then
  echo "== SHMQ_QUICK=1: loom, narrow widths, debug build, bench and fuzzing skipped =="
  echo "the quick stages passed (not the whole suite)"
  exit 0
fi

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
cargo build -p shmq-c --target-dir target/debug-suite
cargo test --workspace --target-dir target/debug-suite

echo "== shmq bench --quick (every scenario runs, every message arrives; no speed is checked) =="
cargo build --release --bin shmq
# The python row runs with the environment the Python tests used.
SHMQ_BENCH_PYTHON="$python" "${py_env[@]}" target/release/shmq bench --quick

if cargo +nightly --version >/dev/null 2>&1 && ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "== set-up: cargo install cargo-fuzz --locked =="
  cargo install cargo-fuzz --locked || echo "cargo-fuzz could not be installed"
fi
if cargo +nightly --version >/dev/null 2>&1 && command -v cargo-fuzz >/dev/null 2>&1; then
  # Every target for SHMQ_FUZZ_SECS seconds (45 by default: about 3 minutes
  # of fuzzing in all), one process at a time, under AddressSanitizer, from
  # the committed seeds (fuzz/README.md).
  secs=${SHMQ_FUZZ_SECS:-45}
  # A fixed seed: the same commit starts from the same mutation sequence
  # here as on a developer's machine (how far it gets in the time follows
  # the machine's speed, so a finding may still show in one run and not in
  # another; its input is written to fuzz/artifacts/). SHMQ_FUZZ_SEED=0
  # lets libFuzzer choose; long exploratory runs belong outside the test
  # command, see fuzz/README.md.
  seed=${SHMQ_FUZZ_SEED:-20261207}
  echo "== fuzzing, bounded: ${secs} s per target (nightly, AddressSanitizer) =="
  cargo +nightly fuzz build
  for spec in header:8192 open_and_operate:65536 model_ops:4096 c_abi:2048 legacy:65536; do
    target=${spec%%:*}
    mkdir -p "target/fuzz-corpus/$target"
    cargo +nightly fuzz run "$target" "target/fuzz-corpus/$target" "fuzz/seeds/$target" -- \
      -max_total_time="$secs" -timeout=10 -max_len="${spec##*:}" -rss_limit_mb=4096 -seed="$seed"
  done
  # model_ops again in the narrow build (4-bit sequences and laps), so that
  # every input wraps them within a few operations.
  echo "== fuzzing model_ops with narrow widths (--cfg shmq_narrow): ${secs} s =="
  RUSTFLAGS="--cfg shmq_narrow" cargo +nightly fuzz run model_ops --target-dir target/fuzz-narrow \
    target/fuzz-corpus/model_ops fuzz/seeds/model_ops -- \
    -max_total_time="$secs" -timeout=10 -max_len=4096 -rss_limit_mb=4096 -seed="$seed"
else
  echo "== fuzzing skipped: needs a nightly toolchain and cargo-fuzz =="
fi
echo "all tests passed"
