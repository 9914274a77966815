#!/usr/bin/env bash
# Builds Tarn (release) and runs `tarn standalone` with the demo lake in
# ./lake. Extra arguments go to `tarn standalone` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
dev/setup.sh --kernels
cargo build --release -p tarn-cli
exec "${CARGO_TARGET_DIR:-target}/release/tarn" standalone "$@"
