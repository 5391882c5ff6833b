#!/usr/bin/env bash
# Benchmarks deploy-guard against the hooks users write themselves (bench/peer: Python 3, boto3,
# requests, run by awslambdaric), side by side in one run, and writes BENCHMARKS.md: medians,
# ratios, the machine, the commands, and one PASS/FAIL line per budget (also printed).
#
# Usage: scripts/bench.sh [--runs N] [--default-features] [--out FILE]
#   --runs N             runs per figure and side (default 15; at least 3)
#   --default-features   also build every function with the AWS SDK's default features, in a
#                        temporary copy of the workspace and its own target directory, for
#                        figure 7 (a second release build of the SDK: about 20 minutes on 2 cores)
#   --out FILE           where to write (default BENCHMARKS.md)
#
# Needs what scripts/test.sh needs (Rust, Python 3 with venv); installs the rest into the
# repository: .venv (the test bed), .venv-tools (cargo-lambda), .venv-bench (the peer).
# Exits non-zero when a budget is missed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

runs=15
default_features=0
out=BENCHMARKS.md
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --default-features) default_features=1; shift ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
command="scripts/bench.sh"
[ "$runs" != 15 ] && command="$command --runs $runs"
[ "$default_features" = 1 ] && command="$command --default-features"
[ "$out" != BENCHMARKS.md ] && command="$command --out $out"

step() { echo "[bench.sh] $*" >&2; }

scripts/setup-testbed.sh
scripts/setup-tools.sh
export PATH="$root/.venv-tools/bin:$PATH"

# The peer's virtualenv, pinned, and one launcher per function: the equivalent of
# `python -m awslambdaric MODULE.lambda_handler`, started by the kernel from its #! line.
req=bench/peer/requirements.txt
stamp=.venv-bench/.requirements.sha256
want=$(sha256sum "$req" | cut -d' ' -f1)
if ! [ -x .venv-bench/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  step "installing the peer's packages into .venv-bench from $req"
  python3 -m venv .venv-bench
  .venv-bench/bin/python -m pip install --quiet --disable-pip-version-check -r "$req"
  echo "$want" > "$stamp"
fi
for pair in hook:peer-hook alarm_router:peer-alarm-router bake_poll:peer-bake-poll; do
  module=${pair%%:*}
  launcher=.venv-bench/bin/${pair#*:}
  cat > "$launcher" <<EOF
#!$root/.venv-bench/bin/python
import sys; from awslambdaric.__main__ import main; main([sys.argv[0], "$module.lambda_handler"])
EOF
  chmod +x "$launcher"
done

zip_bootstrap() { # bootstrap zip
  rm -f "$2"
  .venv-tools/bin/python - "$1" "$2" <<'PY'
import sys, zipfile
src, dst = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
    info = zipfile.ZipInfo("bootstrap")
    info.external_attr = 0o755 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    with open(src, "rb") as f:
        z.writestr(info, f.read(), compresslevel=9)
PY
}
functions="smoke-test-hook alarm-rollback bake-timer image-gate"

step "release build of every function (cargo-lambda)"
cargo lambda build --release --locked
lambda_dir=${CARGO_TARGET_DIR:-target}/lambda
for f in $functions; do zip_bootstrap "$lambda_dir/$f/bootstrap" "$lambda_dir/$f.zip"; done
steps="- \`cargo lambda build --release --locked\` (cargo-lambda $(cargo lambda --version | awk '{print $2}'), x86_64), then each \`target/lambda/<function>/bootstrap\` zipped alone (deflate, level 9) into \`target/lambda/<function>.zip\`"

default_args=()
if [ "$default_features" = 1 ]; then
  step "release build with the SDK's default features (a temporary copy, target/bench-default-features)"
  dfdir=$root/target/bench-default-features
  copy=$dfdir/workspace
  rm -rf "$copy"
  mkdir -p "$copy"
  tar --exclude=target -cf - Cargo.toml Cargo.lock shared functions tests events $(ls -d rust-toolchain* 2>/dev/null) | tar -xf - -C "$copy"
  # default-features = false comes off the aws-config and aws-sdk-* lines; nothing else changes.
  sed -E -i '/^(aws-config|aws-sdk-[a-z0-9]+) = /s/default-features = false, //' "$copy/Cargo.toml"
  (cd "$copy" && CARGO_TARGET_DIR=$dfdir cargo lambda build --release)
  for f in $functions; do zip_bootstrap "$dfdir/lambda/$f/bootstrap" "$dfdir/lambda/$f.zip"; done
  default_args=(--default-features "$dfdir/lambda")
  steps="$steps
- \`scripts/bench.sh --default-features\`: a copy of the workspace in \`target/bench-default-features/workspace\` whose Cargo.toml has \`default-features = false, \` removed from the \`aws-config\` and \`aws-sdk-*\` lines, built the same way with \`CARGO_TARGET_DIR=target/bench-default-features cargo lambda build --release\`"
fi

step "the benchmark harness, optimised (its own target directory)"
# The harness serves the Runtime API, the sample app and the relays that both sides talk to:
# built optimised, so that its own cost stays small next to what is measured. Only the harness's
# own dependencies are compiled (no SDK crate), with the workspace's features.
harness_env=(CARGO_TARGET_DIR="$root/target/bench-harness" CARGO_PROFILE_RELEASE_LTO=false
  CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_OPT_LEVEL=2)
env "${harness_env[@]}" cargo build --release --workspace --bin bench --locked
bench_bin=$root/target/bench-harness/release/bench
steps="$steps
- \`CARGO_TARGET_DIR=target/bench-harness CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_OPT_LEVEL=2 cargo build --release --workspace --bin bench --locked\`, then \`target/bench-harness/release/bench\` (\`tests/src/bin/bench/\`): starts the test bed, the sample apps and the relays, runs every figure, writes this file
- The peer's virtualenv \`.venv-bench\` from \`bench/peer/requirements.txt\` (every package pinned)"

step "running (about $((runs / 8 + 1)) minutes at --runs $runs)"
export BENCH_COMMAND="$command" BENCH_STEPS="$steps"
export BENCH_CARGO_LAMBDA="cargo-lambda $(cargo lambda --version | awk '{print $2}')"
exec "$bench_bin" --out "$out" --runs "$runs" \
  --bins "$lambda_dir" --peer "$root/.venv-bench/bin" "${default_args[@]}"
