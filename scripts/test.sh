#!/usr/bin/env bash
# Every check CI runs, from a fresh clone: installs what the tests need, then formatting, lints,
# the function binaries, unit and end-to-end tests, and the template lint.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-testbed.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The end-to-end tests run the real binaries: build them first. --all-targets builds them with the
# same features as the tests (dev-dependencies turn on the SDK crates' test-util), so the test
# step reuses these artifacts instead of compiling the SDK crates a second time.
cargo build --workspace --all-targets --locked
cargo test --workspace --locked
if [ -x scripts/lint-template.sh ]; then
  scripts/lint-template.sh
fi
