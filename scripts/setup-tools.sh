#!/usr/bin/env bash
# Creates .venv-tools with cargo-lambda (and the zig it links with), pinned, from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
want="cargo-lambda==1.9.2"
if [ -x .venv-tools/bin/cargo-lambda ] && [ "$(cat .venv-tools/.pinned 2>/dev/null)" = "$want" ]; then
  exit 0
fi
echo "installing $want into .venv-tools ..." >&2
python3 -m venv .venv-tools
.venv-tools/bin/python -m pip install --quiet --disable-pip-version-check "$want"
echo "$want" > .venv-tools/.pinned
