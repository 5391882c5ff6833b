#!/usr/bin/env bash
# The local demo: builds the functions, starts the local AWS test bed and sample apps, and runs
# every function on its story (smoke hook, image gate, bake timer, alarm rollback), printing each
# verdict with its reasons.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-testbed.sh
# One workspace build makes the functions and the demo with the same features.
cargo build --workspace --bins --locked --quiet
exec "${CARGO_TARGET_DIR:-target}/debug/demo"
