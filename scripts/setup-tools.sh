#!/usr/bin/env bash
# Creates .venv-tools with cargo-lambda (and the zig it links with), pinned, from PyPI.
#
# Zig comes as the `ziglang` Python package. cargo-lambda looks for `zig` on PATH, else runs
# `python3 -m ziglang`, which only works while this virtualenv's python3 is the first on PATH: a
# later `export PATH=.venv-sam/bin:$PATH` (the SAM CLI's own virtualenv) broke `sam build` with
# "Zig is not installed". So the virtualenv gets a `zig` launcher of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
want="cargo-lambda==1.9.2"
if [ -x .venv-tools/bin/cargo-lambda ] && [ -x .venv-tools/bin/zig ] &&
  [ "$(cat .venv-tools/.pinned 2>/dev/null)" = "$want" ]; then
  exit 0
fi
if ! [ -x .venv-tools/bin/cargo-lambda ] || [ "$(cat .venv-tools/.pinned 2>/dev/null)" != "$want" ]; then
  echo "installing $want into .venv-tools ..." >&2
  python3 -m venv .venv-tools
  .venv-tools/bin/python -m pip install --quiet --disable-pip-version-check "$want"
fi
cat > .venv-tools/bin/zig <<LAUNCHER
#!/bin/sh
exec "$PWD/.venv-tools/bin/python" -m ziglang "\$@"
LAUNCHER
chmod +x .venv-tools/bin/zig
.venv-tools/bin/zig version >/dev/null
echo "$want" > .venv-tools/.pinned
