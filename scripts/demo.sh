#!/usr/bin/env bash
# The local demo: builds the functions, starts the local AWS test bed and sample apps, runs a good
# and a broken release through the smoke hook (CodeDeploy and ECS blue/green), and prints each
# verdict with its reasons.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-testbed.sh
# One workspace build makes the functions and the demo with the same features.
cargo build --workspace --bins --locked --quiet
exec "${CARGO_TARGET_DIR:-target}/debug/demo"
