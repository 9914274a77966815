#!/usr/bin/env bash
# Runs every check and test: formatting, the checked-in protobuf code,
# clippy and rustdoc with warnings as errors,
# unit tests, the cross-process cluster tests (real `tarn` binary, Rust
# Flight SQL client), the Python client tests (ADBC, pyarrow, DuckDB,
# Jupyter, the Helm chart) and the container image.
set -euo pipefail
cd "$(dirname "$0")/.."
dev/setup.sh --python

step() { printf '\n==> %s\n' "$*"; }

# A linker that runs out of disk dies with a bus error that names nothing;
# say how much room there is up front so such a failure can be read.
target_dir=${CARGO_TARGET_DIR:-target}
mkdir -p "$target_dir"
free_kb=$(df -Pk "$target_dir" | awk 'NR==2 {print $4}')
printf 'free disk for %s: %s GiB (a cold build needs about 10)\n' \
  "$target_dir" "$((free_kb / 1024 / 1024))"

step "format"
cargo fmt --all -- --check

step "protobuf code is what tarn.proto generates"
cargo run -q -p tarn-proto-gen
git diff --exit-code -- proto/src/generated || {
  echo "proto/src/generated is stale: run 'cargo run -p tarn-proto-gen' and commit" >&2
  exit 1
}

step "build"
# One invocation for the binary and every test target: building them
# separately resolves features differently and compiles the engine twice.
cargo build --locked --workspace --bins --tests

step "lints (clippy, warnings are errors)"
cargo clippy --locked --workspace --all-targets -- -D warnings

step "API docs build without warnings"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --workspace --no-deps

step "Rust tests (unit + cluster)"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --workspace --test-threads 2 --no-fail-fast
else
  cargo test --locked --workspace -- --test-threads 2
fi

step "Python client tests (and the Helm chart, rendered and run)"
.venv/bin/python -m pytest -q -p no:cacheprovider tests/python

step "container image: built around this binary, run, queried"
dev/image.sh --test
