#!/usr/bin/env bash
# Builds the release bootstrap with cargo-lambda (x86_64, the machine's target) and checks the
# smoke hook's budgets: zipped size, start-up, peak memory. Prints PASS/FAIL per budget.
# Usage: scripts/budgets.sh [runs]   (default 30 start-up runs)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-testbed.sh
scripts/setup-tools.sh
export PATH="$PWD/.venv-tools/bin:$PATH"
cargo lambda build --release --locked --bin smoke-test-hook
bootstrap=target/lambda/smoke-test-hook/bootstrap
zip=target/lambda/smoke-test-hook.zip
rm -f "$zip"
.venv-tools/bin/python - "$bootstrap" "$zip" <<'PY'
import sys, zipfile
src, dst = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
    info = zipfile.ZipInfo("bootstrap")
    info.external_attr = 0o755 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    with open(src, "rb") as f:
        z.writestr(info, f.read(), compresslevel=9)
PY
cargo build --workspace --bins --locked --quiet
echo "machine: $(nproc) cores, $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
exec "${CARGO_TARGET_DIR:-target}/debug/budgets" "$bootstrap" "$zip" "${1:-30}"
