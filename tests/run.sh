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
#   5. builds the fuzz targets (fuzz/, cargo fuzz) and runs each for a few seconds, so they keep
#      compiling and exercised;
#   6. runs the end-to-end suite (tests/e2e) against the real binary with tritonclient,
#      onnxruntime as the reference, and raw HTTP.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

echo "==> cargo build --release"
cargo build --release --locked

echo "==> cargo fmt --check"
cargo fmt --all --check

echo "==> cargo clippy (workspace, all targets, release profile, -D warnings)"
cargo clippy --release --locked --workspace --all-targets -- -D warnings

echo "==> python venv (target/pyenv)"
venv="$(bash tests/setup-venv.sh | tail -n 1)"
export QUIVER_TEST_PYTHON="$venv/bin/python"

echo "==> cargo test (workspace, release profile)"
cargo test --release --locked --workspace

echo "==> fuzz targets: build, and run each for a few seconds from its corpus (fuzz/run.sh)"
bash fuzz/run.sh smoke 5

echo "==> end-to-end tests (tests/e2e)"
QUIVER_BIN="$root/target/release/quiver" "$venv/bin/python" -m pytest tests/e2e -q -p no:cacheprovider "$@"
