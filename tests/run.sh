#!/usr/bin/env bash
# Runs every test of the project: the README's test command, and what .ci/run calls.
#
#   1. builds the release binary (target/release/quiver) and the workspace tests;
#   2. checks formatting (cargo fmt, rustfmt.toml) and lints (cargo clippy -D warnings, every
#      target, release profile: the build scripts and proc macros it compiles are the build's);
#   3. creates/refreshes the Python venv of reference clients and test servers (target/pyenv),
#      exported as QUIVER_TEST_PYTHON (the S3 storage tests run moto's server from it);
#   4. runs the Rust unit and integration tests (cargo test --release: tract is far too slow
#      unoptimized, and sharing the release profile builds the dependencies only once);
#   5. builds the fuzz targets (fuzz/, cargo fuzz, unoptimized) and runs each for a few seconds,
#      so they keep compiling and exercised;
#   6. runs the end-to-end suite (tests/e2e) against the real binary with tritonclient,
#      onnxruntime as the reference, and raw HTTP; test_openapi.py runs schemathesis against
#      the published OpenAPI document (docs/openapi/) of `quiver serve` and `quiver up`.
# The venv is made in the background while Rust compiles (it is network-bound, the build is not).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# Each stage says when it starts (wall clock, seconds since the script began).
stage() { echo "==> $1 [$(date +%T), +${SECONDS}s]"; }

mkdir -p target
stage "python venv (target/pyenv), in the background"
bash tests/setup-venv.sh >target/setup-venv.log 2>&1 &
venv_job=$!

stage "cargo build --release"
cargo build --release --locked

stage "cargo fmt --check"
cargo fmt --all --check

stage "cargo clippy (workspace, all targets, release profile, -D warnings)"
cargo clippy --release --locked --workspace --all-targets -- -D warnings

stage "python venv (target/pyenv): waiting for it"
if ! wait "$venv_job"; then
  cat target/setup-venv.log >&2
  exit 1
fi
venv="$(tail -n 1 target/setup-venv.log)"
export QUIVER_TEST_PYTHON="$venv/bin/python"
# The onnxruntime engine's library, from the venv's onnxruntime wheel: its Rust and e2e tests
# (and the served models that ask for it) use it.
ORT_DYLIB_PATH="$(ls "$venv"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | head -n 1)"
export ORT_DYLIB_PATH

stage "cargo test (workspace, release profile)"
cargo test --release --locked --workspace

stage "fuzz targets: build, and run each for a few seconds from its corpus (fuzz/run.sh)"
bash fuzz/run.sh smoke 5

stage "end-to-end tests (tests/e2e)"
QUIVER_BIN="$root/target/release/quiver" "$venv/bin/python" -m pytest tests/e2e -q -p no:cacheprovider "$@"
